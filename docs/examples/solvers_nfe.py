# %% [markdown]
# # solvers_nfe
#
# This example is being written.

# %%
print("placeholder")
