"""Stage gates: thresholds on cgF1 / IL_MCC / pmF1 and no regression against production."""
