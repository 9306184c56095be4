"""Learning: the reduced functional J(p) and its gradient, Taylor tests, the optimizers, the
training loop, and the certification of what training reports against the characteristics."""
