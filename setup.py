"""Build hook for the optional compiled publish path; the project's metadata lives in pyproject.toml.

``optional=True``: where no C compiler or Python headers exist, the install goes on without it and
SharedMemoryPublisher uses its Python path, which writes the same records, only slower.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("shmproxy.core._speedups", ["shmproxy/core/_speedups.c"], optional=True,
                  extra_compile_args=["-O2", "-std=c11"]),
    ],
)
