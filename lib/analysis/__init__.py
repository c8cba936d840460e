"""The measurements behind each claim: metrics and feature networks (`metrics`, `features`, `inception`),
linearity of the score (`linearity`), the mixture grid (`mixture_grid`, `score_fields`, `memorization`),
trajectories (`trajectories`, `sampler_accuracy`) and teleportation (`teleportation`, `teleport_sweep`,
`teleport_pairs`, `sample_quality`).
"""
