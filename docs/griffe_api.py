"""A griffe extension for the API reference (docs/api.md): show the API, not the internals.

Two rules, applied while griffe reads the source:

* A module that lists its public names in ``__all__`` shows only those (and
  its submodules): ``tinyad.nn.functional.shape_error`` (imported there for
  its own use) has no underscore but is not part of the API, because
  ``__all__`` does not list it.
* A plain attribute without a docstring (``self.data = ...`` in a
  constructor) is left out: it would show nothing but its name, and the
  class docstring already says what the attributes a reader uses mean
  (``.data``, ``.grad``, ...). Functions, methods and properties are always
  shown, since a signature alone says something; an attribute with a
  docstring (a string right below its assignment) is shown too.
"""
from __future__ import annotations

from typing import Any

import griffe


class ShowTheApi(griffe.Extension):
    def on_module_members(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        exports = mod.exports
        if not exports or not all(isinstance(name, str) for name in exports):
            return  # no __all__, or one griffe cannot read as a list of names
        for name, member in list(mod.members.items()):
            # imported names (aliases) are never shown unless exported; submodules stay
            if name not in exports and not member.is_alias and not member.is_module:
                del mod.members[name]

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        for name, member in list(cls.members.items()):
            if (member.is_attribute and not member.is_alias and not member.docstring
                    and "property" not in member.labels):
                del cls.members[name]
