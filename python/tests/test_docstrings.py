"""Everything help(lowrank) shows is documented: the package, its public functions and classes,
and their public methods and properties."""
import inspect

import lowrank


def public_members(cls):
    for name, member in vars(cls).items():
        if name == "__init__" or not name.startswith("_"):
            yield name, member


def test_every_public_function_and_class_has_a_docstring():
    missing = [] if inspect.getdoc(lowrank) else ["lowrank"]
    for name in dir(lowrank):
        value = getattr(lowrank, name)
        if name.startswith("_") or inspect.ismodule(value) or not (inspect.isclass(value) or inspect.isfunction(value)):
            continue
        if not value.__doc__:  # getdoc would inherit a base class's
            missing.append(name)
        if inspect.isclass(value):
            for cls in value.__mro__:
                if cls.__module__.startswith("lowrank"):
                    for member_name, member in public_members(cls):
                        if (inspect.isfunction(member) or isinstance(member, (property, classmethod, staticmethod))) \
                                and not (member.__func__ if hasattr(member, "__func__") else member).__doc__:
                            missing.append(f"{cls.__name__}.{member_name}")
    assert not missing, f"no docstring: {sorted(set(missing))}"
