"""Small shared helpers: image I/O, grids, devices, seeding."""
