"""Trainers (GAN, face embedding, inversion) and what they share: checkpoints, DDP, logging."""
