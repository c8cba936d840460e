"""Diffusion itself: the samplers of the probability-flow ODE (`samplers`, `multistep`, `teleport`,
`reference_samplers`) and training (`train_config`, `training`, `training_data`, `checkpoints`).
"""
