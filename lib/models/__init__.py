"""Denoisers D(x; sigma) behind one interface (`denoisers`): the analytic models (`gaussian`, `isotropic`,
`mixtures`, `gmm` with `kmeans`) and the networks (`edm` preconditioning, `unet`, `discrete_vp` for diffusers
models, `adapters` for any torch module).
"""
