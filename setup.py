"""Builds the one C extension (the float8 scan kernel); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "indexing._float8scan",
            ["indexing/_float8scan.c"],
            # -ffast-math lets the dot product vectorise (reassociated sums); -march=native
            # because the package is always built on the machine that runs it.
            extra_compile_args=["-O3", "-march=native", "-ffast-math", "-fopenmp"],
            extra_link_args=["-fopenmp"],
        )
    ]
)
