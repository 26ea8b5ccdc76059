"""Selection strategies beyond a plain top-K: pure functions on NumPy arrays, composed by the select stage."""
