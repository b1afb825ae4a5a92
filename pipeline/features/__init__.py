"""Pure, point-in-time feature stages and the training-set builder."""
