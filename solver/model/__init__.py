"""The model, numpy only (never imports dolfinx): the domain and its cutoff, the velocity field
of eq. 2, terminal functions, data sets and their scaling into Ω, losses, and the model's own
prediction, the flow of its characteristics."""
