"""The run directory: its files (store: theta, checkpoint, history, metrics, config; atomic
writes), the fields for ParaView, and the pictures."""
