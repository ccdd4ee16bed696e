"""Stage gates: thresholds on cgF1 / IL_MCC / pmF1 (the pretrain stage: on recognition AUC) and no
regression against production."""
