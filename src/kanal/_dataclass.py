"""``@dataclass`` and ``field`` for the plugin exec path, without importing dataclasses.

The standard module imports ``inspect`` (and with it ``dis``, ``enum``, ``re``,
``tokenize``...): ~12 ms of a standalone plugin exec, more than the plugin's own
work. This is the subset kanal's exec-path classes use, with the same results:
``__init__`` in field order with defaults and ``default_factory``,
``__post_init__``, ``__repr__``, ``__eq__``, ``frozen`` (and the hash that goes
with it), ``__match_args__`` and ``__dataclass_fields__`` (name -> :class:`Field`,
in order). ``slots=True`` is accepted and ignored (the instances keep a
``__dict__``). Anything else is refused, so a class cannot silently get other
semantics than the standard decorator would give it.

Type checkers see the standard decorator (the ``TYPE_CHECKING`` branch), so
their dataclass support applies unchanged.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
    from dataclasses import field as field
else:
    __all__ = ["Field", "FrozenInstanceError", "dataclass", "field"]

    class _Missing:
        def __repr__(self) -> str:
            return "MISSING"

    MISSING = _Missing()

    class FrozenInstanceError(AttributeError):
        """Assignment to a field of a frozen instance (as dataclasses' own)."""

    class Field:
        __slots__ = ("default", "default_factory", "name")

        def __init__(self, default=MISSING, default_factory=MISSING):
            if default is not MISSING and default_factory is not MISSING:
                raise ValueError("cannot specify both default and default_factory")
            self.name = ""
            self.default = default
            self.default_factory = default_factory

        def __repr__(self):
            return (
                f"Field(name={self.name!r},default={self.default!r},"
                f"default_factory={self.default_factory!r})"
            )

    def field(*, default=MISSING, default_factory=MISSING):
        return Field(default, default_factory)

    _SUPPORTED = {"init": True, "repr": True, "eq": True, "frozen": False, "slots": False}

    def dataclass(cls=None, /, **options):
        for k, v in options.items():
            if k not in _SUPPORTED:
                raise TypeError(f"kanal._dataclass does not support {k}=")
            if k in ("init", "repr", "eq") and v is not True:
                raise TypeError(f"kanal._dataclass does not support {k}={v!r}")

        def wrap(c):
            return _process(c, bool(options.get("frozen", False)))

        return wrap if cls is None else wrap(cls)

    def _is_classvar(annotation):
        a = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
        return a.startswith(("ClassVar", "typing.ClassVar", "InitVar", "dataclasses.InitVar"))

    def _process(cls, frozen):
        fields = {}
        for base in reversed(cls.__mro__[1:]):
            fields.update(getattr(base, "__dataclass_fields__", {}))
        for name, annotation in cls.__dict__.get("__annotations__", {}).items():
            if _is_classvar(annotation):
                if "InitVar" in str(annotation):
                    raise TypeError("kanal._dataclass does not support InitVar")
                continue
            value = cls.__dict__.get(name, MISSING)
            f = value if isinstance(value, Field) else Field(default=value)
            f.name = name
            if f.default is not MISSING and f.default.__class__.__hash__ is None:
                raise ValueError(
                    f"mutable default {type(f.default)} for field {name} is not allowed: "
                    "use default_factory"
                )
            if isinstance(value, Field):
                if f.default is MISSING:
                    delattr(cls, name)
                else:
                    setattr(cls, name, f.default)
            fields[name] = f
        cls.__dataclass_fields__ = fields
        cls.__match_args__ = tuple(fields)
        names = tuple(fields)
        _make_init(cls, fields)
        if "__repr__" not in cls.__dict__:
            cls.__repr__ = _make_repr(names)
        if "__eq__" not in cls.__dict__:
            cls.__eq__ = _make_eq(names)
        if "__hash__" not in cls.__dict__:
            # dataclasses: eq without frozen makes instances unhashable; frozen hashes
            # the fields.
            cls.__hash__ = _make_hash(names) if frozen else None
        if frozen:
            _freeze(cls, frozenset(names))
        return cls

    def _make_init(cls, fields):
        # One generic __init__ per class rather than source compiled with exec()
        # (what dataclasses does): compiling costs ~0.2-1 ms per class at every
        # plugin exec, the generic loop a few microseconds per instance.
        names = tuple(fields)
        count = len(names)
        specs = tuple((n, f.default, f.default_factory) for n, f in fields.items())
        seen_default = False
        for n, default, factory in specs:
            if default is not MISSING or factory is not MISSING:
                seen_default = True
            elif seen_default:
                raise TypeError(f"non-default argument {n!r} follows default argument")
        post_init = hasattr(cls, "__post_init__")
        setter = object.__setattr__
        qualname = cls.__qualname__

        def __init__(self, *args, **kwargs):
            if len(args) > count:
                raise TypeError(
                    f"{qualname}.__init__() takes {count + 1} positional arguments "
                    f"but {len(args) + 1} were given"
                )
            for i, value in enumerate(args):
                name = names[i]
                if name in kwargs:
                    raise TypeError(
                        f"{qualname}.__init__() got multiple values for argument {name!r}"
                    )
                setter(self, name, value)
            for name, default, factory in specs[len(args) :]:
                if name in kwargs:
                    value = kwargs.pop(name)
                elif default is not MISSING:
                    value = default
                elif factory is not MISSING:
                    value = factory()
                else:
                    raise TypeError(
                        f"{qualname}.__init__() missing 1 required positional argument: {name!r}"
                    )
                setter(self, name, value)
            if kwargs:
                raise TypeError(
                    f"{qualname}.__init__() got an unexpected keyword argument "
                    f"{next(iter(kwargs))!r}"
                )
            if post_init:
                self.__post_init__()

        __init__.__qualname__ = f"{qualname}.__init__"
        cls.__init__ = __init__

    def _make_repr(names):
        def __repr__(self):
            inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
            return f"{self.__class__.__qualname__}({inner})"

        return __repr__

    def _make_eq(names):
        def __eq__(self, other):
            if other.__class__ is self.__class__:
                return tuple(getattr(self, n) for n in names) == tuple(
                    getattr(other, n) for n in names
                )
            return NotImplemented

        return __eq__

    def _make_hash(names):
        def __hash__(self):
            return hash(tuple(getattr(self, n) for n in names))

        return __hash__

    def _freeze(cls, names):
        # As dataclasses: an instance of exactly this class takes no assignment at
        # all; a subclass's own attributes can still be set.
        def __setattr__(self, name, value):
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot assign to field {name!r}")
            super(cls, self).__setattr__(name, value)

        def __delattr__(self, name):
            if type(self) is cls or name in names:
                raise FrozenInstanceError(f"cannot delete field {name!r}")
            super(cls, self).__delattr__(name)

        cls.__setattr__ = __setattr__
        cls.__delattr__ = __delattr__
