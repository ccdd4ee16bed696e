"""The SAM 3 image model, built from Meta's ``sam3`` module classes at a size chosen by config.

- ``config``: ``ModelConfig`` and the ``tiny`` / ``small`` / ``full`` presets
- ``builder``: ``build_model(size_or_config, device)`` -> the official ``Sam3Image``
- ``compat``: ``ensure_compat()``, the patches that let ``sam3`` run without CUDA/Triton
- ``checkpoint``: ``normalize_state_dict``, ``load_weights`` (keys only; storage is the trainer's)
- ``batch``: ``records_to_batch`` -> ``ModelBatch`` (the official ``BatchedDatapoint`` inside)
- ``loss``: ``build_criterion(LossWeights)``, ``forward_and_loss(model, batch, criterion)``
- ``predict``: ``predict_records`` -> SA-Co results entries
- ``settings``: the loss weights and clip sampling a stage's ``TrainConfig`` carries
- ``video``, ``clips``, ``tracker_io``: the video model, clip sampling and tracker loss, their types
"""
