"""The shared engines: fine-tune (one Accelerate training loop) and evaluate (metrics,
cross-validation, bootstrap intervals). Importing this package imports nothing heavy."""
