# %% [markdown]
# # guidance_digits
#
# This example is being written.

# %%
print("placeholder")
