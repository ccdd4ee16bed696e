"""The run's outcome: what each stage did, which gate stopped it, what was promoted."""
