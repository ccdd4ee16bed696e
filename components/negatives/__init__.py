"""Hard negative mining: ontology-driven noun phrases absent from each image."""
