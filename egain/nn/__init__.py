"""Network building blocks shared by encoders and face-embedding networks."""
