"""Part 5: flow matching and EDM."""
