# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Hello, notebook
#
# This small notebook is executed every time the site is built, so its output
# is always current; a cell that raises an error stops the build. Math in
# markdown cells is typeset by the site's own KaTeX, for example the density of
# the standard normal, $p(x) = \frac{1}{\sqrt{2\pi}} e^{-x^2/2}$.

# %%
import numpy as np

x = np.linspace(-4.0, 4.0, 801)
density = np.exp(-(x**2) / 2) / np.sqrt(2 * np.pi)
area = density.sum() * (x[1] - x[0])  # a Riemann sum is plenty here
print(f"integral of the density over [-4, 4]: {area:.6f}")

# %% [markdown]
# The integral is close to one (the tails beyond $|x| > 4$ hold about $6 \times 10^{-5}$).

# %%
import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(6, 3))
ax.plot(x, density)
ax.set_xlabel("x")
ax.set_ylabel("density")
ax.set_title("Standard normal density")
plt.show()
