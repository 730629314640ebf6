"""The trainers' loops (GAN, face embedding, inversion). Run infrastructure lives in `egain.runtime`."""
