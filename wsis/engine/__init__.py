"""Training machinery: the trainer loop, checkpoints, data order and multi-process set-up."""
