"""Run infrastructure shared by everything below the trainers.

Safe checkpoint loading and atomic writes, JSONL logging and progress bars, run provenance,
signal handling and DDP helpers. Networks, metrics, methods and workflows may import this
package; it imports nothing above ``egain.errors`` and ``egain.utils``.
"""
