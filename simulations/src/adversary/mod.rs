//! Adversarial nodes (filled in shortly).
