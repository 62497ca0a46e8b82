"""Package attributes imported on first use (PEP 562), so that `mamsf --help` and the commands
that need no model never import Keras or TensorFlow (seconds of start-up and their log lines)."""

import importlib

from keras_mamsf.utils.install import missing_install


def lazy_attributes(package, exports):
    """`(__getattr__, __dir__)` for a package whose public names live in submodules.

    Args:
        package: the package's `__name__`.
        exports: `{name: "module.path"}`; a name whose module is `package + "." + name` is a subpackage.

    Example:
        __getattr__, __dir__ = lazy_attributes(__name__, {"build_model": "keras_mamsf.models"})
    """

    def __getattr__(name):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(exports[name])
        except ImportError as error:  # the runtime install: say which install has it
            message = missing_install(error)
            if message is None:
                raise
            raise ModuleNotFoundError(f"{package}.{name}: {message}", name=error.name) from None
        return module if exports[name] == f"{package}.{name}" else getattr(module, name)

    def __dir__():
        return sorted(exports)

    return __getattr__, __dir__
