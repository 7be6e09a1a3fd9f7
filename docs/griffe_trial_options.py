"""A griffe extension for the API pages: a trial option's help text becomes its docstring.

`TrialConfig`'s fields are written `name: type = _f(default, "help", **metadata)`, the help text
beside each field (the CLI and `layerlth ticket --help` read it from there). Read statically, a
field's value would be that whole call; this extension shows the default as the value and the
help text as the field's documentation. Only calls to a function named `_f` whose second argument
is a string literal are touched, so anything else is documented as griffe reads it.
"""

import ast

import griffe

HELPER = "_f"


class TrialOptions(griffe.Extension):
    def on_attribute_instance(self, *, node, attr, agent, **kwargs):
        value = getattr(node, "value", None)
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == HELPER):
            return
        if len(value.args) < 2 or not isinstance(value.args[1], ast.Constant) or not isinstance(value.args[1].value, str):
            return
        attr.value = ast.unparse(value.args[0])  # the default as written: 'at_init', 8 / 255, ()
        if attr.docstring is None:
            attr.docstring = griffe.Docstring(value.args[1].value, lineno=node.lineno, parent=attr)
