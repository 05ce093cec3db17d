"""One declaration per job, beside its function; every way in checks against it.

A job is declared once::

    @job(users_queue, "process-user-data", public=True)
    def process_user_data(user_id: UserId) -> dict[str, Any]:
        \"\"\"Recompute one user's aggregates from their actions.\"\"\"

which gives its name, queue, parameters with types and bounds (the function's
annotations; constraints as pydantic ``Field``\\ s beside them), whether it runs
one at a time (``single_flight``), whether users may trigger it (``public``)
and a one-line description (the docstring's first line). The task function it
returns is a huey :class:`~huey.api.TaskWrapper` whose ``__call__``,
``schedule`` and ``s`` check the arguments and the delay or ETA before anything
is enqueued; the CLI options, the API schemas and the dashboard form are
derived from :attr:`JobSpec.arguments`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import math
import typing
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from huey import signals as S
from huey.api import Result, Task, TaskWrapper
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError

from meingym_tasks.exceptions import ConfigurationError, InvalidJobArguments, InvalidJobRequest, PermanentJobError
from meingym_tasks.queue import single_flight
from meingym_tasks.queue.app import MeinGymHuey
from meingym_tasks.settings import Settings

#: Keyword arguments huey's ``s()`` and ``__call__`` take for itself; no job parameter may use these names.
HUEY_OPTIONS = ("id", "eta", "delay", "retries", "retry_delay", "retry_backoff", "priority", "expires", "timeout")
#: The parameter through which huey hands a job its Task (not an argument anybody passes).
CONTEXT_PARAMETER = "task"
#: An ETA further in the past than this is a mistake (wrong year, wrong zone), not "run now".
PAST_ETA_TOLERANCE = timedelta(hours=1)
#: Text never holds NUL: PostgreSQL cannot store it, so it is refused where it comes in (JSON Schema pattern).
NO_NUL_PATTERN = "^[^\\u0000]*$"
#: JSON Schema types an interface can offer as a field (CLI option, form input); public jobs use only these.
FIELD_TYPES = ("integer", "number", "string", "boolean")


def no_nul(value: Any) -> Any:
    """Refuse text with a NUL character, with a message that says so (a pattern error would not)."""
    if isinstance(value, str) and "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain a NUL character")
    return value


#: ``str`` for parameters, filters and form fields: any text but NUL.
Text = Annotated[str, AfterValidator(no_nul), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})]


# --------------------------------------------------------------------------- what is allowed


def allowed(schema: Mapping[str, Any]) -> str:
    """What a JSON Schema accepts, said in words ("a whole number from 1 to 10")."""
    if "anyOf" in schema:
        outer = {key: value for key, value in schema.items() if key != "anyOf"}
        return " or ".join(dict.fromkeys(allowed({**outer, **option}) for option in schema["anyOf"]))
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return "one of: " + ", ".join(str(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind in ("integer", "number"):
        noun = "a whole number" if kind == "integer" else "a number"
        low = _bound(schema, "minimum", "exclusiveMinimum", "more than")
        high = _bound(schema, "maximum", "exclusiveMaximum", "less than")
        if "minimum" in schema and "maximum" in schema:
            return f"{noun} from {_number(schema['minimum'])} to {_number(schema['maximum'])}"
        limits = [text for text in (low and f"{low}", high and f"{high}") if text]
        return f"{noun} " + " and ".join(limits) if limits else noun
    if kind == "boolean":
        return "true or false"
    if kind == "null":
        return "null"
    if kind == "string":
        shape = {"date": "a date such as 2026-12-01", "date-time": "a date and time such as 2026-12-01T09:00"}
        text = shape.get(schema.get("format", ""), "text")
        if "maxLength" in schema:
            text += f" of at most {schema['maxLength']} characters"
        return text + (" without NUL characters" if schema.get("pattern") == NO_NUL_PATTERN else "")
    if kind == "array":
        return "a list"
    return "any value"


def value_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema of a value that is given (``int | None`` is an int that may be left out)."""
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"] or [schema]
    return {**{k: v for k, v in schema.items() if k != "anyOf"}, **options[0]}


def _bound(schema: Mapping[str, Any], inclusive: str, exclusive: str, word: str) -> str:
    if inclusive in schema:
        return ("at least " if inclusive == "minimum" else "at most ") + _number(schema[inclusive])
    if exclusive in schema:
        return f"{word} {_number(schema[exclusive])}"
    return ""


def _number(value: float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.cache
def property_schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's JSON Schema with ``$ref``\\ s resolved (an enum lives in ``$defs``)."""
    schema = model.model_json_schema()
    definitions = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = definitions[node["$ref"].rsplit("/", 1)[1]]
                return resolve({**target, **{key: value for key, value in node.items() if key != "$ref"}})
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    return {name: resolve(value) for name, value in schema.get("properties", {}).items()}


def explain(model: type[BaseModel], errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """pydantic's ``errors`` of ``model``, each message saying what the field allows (or which fields exist)."""
    schemas = property_schemas(model)
    explained = []
    for error in errors:
        field = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "is not a parameter; allowed: " + (", ".join(schemas) or "none")
        elif error["type"] == "missing" and field in schemas:
            message = f"missing; allowed: {allowed(schemas[field])}"
        elif field in schemas and len(error["loc"]) == 1 and error["type"] != "nul_character":
            message = f"{_shown(error['input'])} is not allowed ({message}); allowed: {allowed(schemas[field])}"
        explained.append({**error, "msg": message})
    return explained


class JobArguments(BaseModel):
    """The base of every job's arguments: strict types (``"7"`` and ``True`` are not ints), no unknown names."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def field_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, str]]:
    """pydantic's errors as ``{"field", "message", "type"}`` (the API's ``errors[]``)."""
    return [
        {
            "field": ".".join(str(part) for part in error["loc"]) or "arguments",
            "message": str(error["msg"]),
            "type": str(error["type"]),
        }
        for error in errors
    ]


def invalid(job: str, errors: list[dict[str, str]]) -> InvalidJobArguments:
    text = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return InvalidJobArguments(f"{job}: {text}", errors)


# --------------------------------------------------------------------------- the declaration


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """What is declared about a job; everything else (CLI, API, dashboard, checks) is derived from it."""

    name: str
    queue: str
    function: Callable[..., Any]
    #: The parameters as a pydantic model, built from the function's signature.
    arguments: type[JobArguments]
    #: Parameters that may be passed by position, in order (the rest are keyword-only).
    positional: tuple[str, ...]
    description: str
    public: bool = False
    single_flight: bool = False
    #: Enqueued by the scheduler when due (housekeeping): no registry records.
    periodic: bool = False

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str,
        queue: str,
        description: str | None = None,
        public: bool = False,
        single_flight: bool = False,
        periodic: bool = False,
    ) -> JobSpec:
        """Read the declaration off ``function``: its parameters, annotations and docstring."""
        target = inspect.unwrap(function)
        try:
            hints = typing.get_type_hints(target, include_extras=True)
        except NameError as exc:
            raise ConfigurationError(f"job {name}: cannot resolve a parameter's annotation: {exc}") from None
        fields: dict[str, Any] = {}
        positional: list[str] = []
        for parameter in inspect.signature(target).parameters.values():
            if parameter.name == CONTEXT_PARAMETER:
                continue
            where = f"job {name}: parameter {parameter.name!r}"
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                raise ConfigurationError(f"{where} must be a named parameter (no *args, **kwargs or positional-only)")
            if parameter.name in HUEY_OPTIONS:
                raise ConfigurationError(f"{where} clashes with huey's option of that name")
            if parameter.name not in hints:
                raise ConfigurationError(f"{where} needs a type annotation")
            annotation = _without_nul(hints[parameter.name])
            default = ... if parameter.default is parameter.empty else parameter.default
            fields[parameter.name] = (annotation, default)
            if parameter.kind == parameter.POSITIONAL_OR_KEYWORD:
                positional.append(parameter.name)
        model_name = "".join(part.capitalize() for part in name.replace(".", "-").split("-")) + "Arguments"
        arguments = create_model(model_name, __base__=JobArguments, __module__=target.__module__, **fields)
        doc = inspect.getdoc(target) or ""
        spec = cls(
            name=name,
            queue=queue,
            function=target,
            arguments=arguments,
            positional=tuple(positional),
            description=description or (doc.strip().splitlines() or [""])[0],
            public=public,
            single_flight=single_flight,
            periodic=periodic,
        )
        if public:
            spec.check_field_types()
        return spec

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        """Each parameter's JSON Schema (type, bounds, description, default), in declaration order."""
        return property_schemas(self.arguments)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(name for name, field in self.arguments.model_fields.items() if field.is_required())

    def check_field_types(self) -> None:
        """A public job's parameters must be what a CLI option and a form field can carry."""
        for parameter, schema in self.parameters.items():
            kinds = {s.get("type") for s in schema.get("anyOf", [schema])} - {"null"}
            if not kinds <= set(FIELD_TYPES) or len(kinds) != 1:
                raise ConfigurationError(
                    f"public job {self.name}: parameter {parameter!r} must be a whole number, number, text, "
                    f"date, date and time, choice or true/false (its schema: {schema})"
                )

    def check(
        self, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, partial: bool = False
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments checked against the declaration, as given (positional stays positional).

        Raises :class:`InvalidJobArguments` naming each field at fault and what it allows.
        ``partial`` lets parameters be missing: huey's pipelines append the previous
        step's result to a step's arguments when it runs.
        """
        if len(args) > len(self.positional):
            names = ", ".join(self.positional) or "none"
            message = f"takes {len(self.positional)} positional argument(s) ({names}), {len(args)} given"
            raise invalid(self.name, [_error("arguments", "too_many_arguments", message)])
        named = dict(zip(self.positional, args, strict=False))
        if kwargs:
            twice = [name for name in kwargs if name in named]
            if twice:
                raise invalid(self.name, [_error(twice[0], "multiple_values", "given twice")])
            named.update(kwargs)
        try:
            # pydantic-core's validator and the model's __dict__: dict(model) iterates in Python (6 µs a call).
            values = self.arguments.__pydantic_validator__.validate_python(named).__dict__
        except ValidationError as exc:
            errors = [e for e in exc.errors(include_url=False) if not (partial and e["type"] == "missing")]
            if errors:
                raise invalid(self.name, field_errors(explain(self.arguments, errors))) from None
            values = named  # checked, but incomplete: the pipeline brings the rest
        return tuple(values[name] for name in self.positional[: len(args)]), {name: values[name] for name in kwargs}

    def call(self, arguments: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments by name as a call: by position where the signature allows (as the registry shows them)."""
        leading = []
        for name in self.positional:
            if name not in arguments:
                break
            leading.append(name)
        return tuple(arguments[name] for name in leading), {k: v for k, v in arguments.items() if k not in leading}

    def restore(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of a message about to run, with JSON text turned back into values.

        A retried job's arguments come from its registry record (JSON), where a
        date is a string; everything else passes through unchanged.
        """
        named = dict(zip(self.positional, args, strict=False))
        if kwargs:
            named.update(kwargs)
        try:
            values = self.arguments.__pydantic_validator__.validate_python(named, strict=False).__dict__
        except ValidationError as exc:
            raise PermanentJobError(f"the arguments do not fit {self.name}: {exc.errors(include_url=False)}") from None
        return tuple(values[name] for name in self.positional[: len(args)]), {name: values[name] for name in kwargs}


def _without_nul(annotation: Any) -> Any:
    """``annotation``, refusing NUL in text wherever it holds a ``str`` (documented as a pattern)."""
    return Annotated[annotation, AfterValidator(no_nul), Field(json_schema_extra=_text_schema)]  # type: ignore[valid-type]


def _text_schema(schema: dict[str, Any]) -> None:
    """Add the no-NUL pattern to the JSON Schema of a text parameter (``str`` or ``str | None``)."""
    if schema.get("type") == "string" and "format" not in schema and "enum" not in schema:
        schema.setdefault("pattern", NO_NUL_PATTERN)
    for option in schema.get("anyOf", []):
        _text_schema(option)


# --------------------------------------------------------------------------- when it runs


def resolve_when(delay: Any, eta: Any, settings: Settings, job: str = "schedule") -> datetime | None:
    """Check a delay (seconds or a timedelta) or an ETA and return the ETA, aware.

    A naive ETA is read in the gym's zone. A delay becomes an ETA here, on the
    same clock as the consumer's (huey would read a clock bound at import time).
    """
    if delay is None and eta is None:
        return None
    limit = settings.max_schedule_ahead
    if delay is not None and eta is not None:
        raise invalid(
            job, [_error(field, "delay_and_eta", "give delay or eta, not both") for field in ("delay", "eta")]
        )
    now = datetime.now(UTC)
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        expected = f"allowed: a number of seconds from 0 to {limit}"
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or math.isnan(seconds):
            raise invalid(job, [_error("delay", "float_type", f"{_shown(delay)} is not allowed; {expected}")])
        if not 0 <= seconds <= limit:
            raise invalid(job, [_error("delay", "range", f"{seconds} is not allowed; {expected}")])
        return now + timedelta(seconds=float(seconds))
    if eta is None:
        return None
    expected = f"allowed: a date and time from an hour ago to {limit} seconds ahead"
    if not isinstance(eta, datetime):
        raise invalid(job, [_error("eta", "datetime_type", f"{_shown(eta)} is not allowed; {expected}")])
    aware = eta if eta.utcoffset() is not None else eta.replace(tzinfo=settings.zone)
    if aware < now - PAST_ETA_TOLERANCE:
        raise invalid(job, [_error("eta", "past", f"{aware.isoformat()} is more than an hour in the past; {expected}")])
    if aware > now + timedelta(seconds=limit):
        raise invalid(job, [_error("eta", "too_far", f"{aware.isoformat()} is too far ahead; {expected}")])
    return aware


def _error(field: str, kind: str, message: str) -> dict[str, str]:
    return {"field": field, "type": kind, "message": message}


# --------------------------------------------------------------------------- the task function


class ExistingRun(Result):
    """The run that already holds a single-flight job's claim; nothing new was enqueued."""

    deduplicated = True


class Job(TaskWrapper):
    """huey's task function, keeping the declaration's rules on every way in.

    ``job(7)``, ``job.schedule(args=(7,), delay=60)`` and ``job.s(7)`` check the
    arguments and the delay or ETA before anything is enqueued (huey's own
    methods are called with what passed). A single-flight job takes its claim
    in the broker on every enqueue; while a run holds it the caller gets that
    run's :class:`ExistingRun` instead of a second run.
    """

    def __init__(self, huey: MeinGymHuey, func: Callable[..., Any], *, spec: JobSpec, **options: Any) -> None:
        self.spec = spec

        @functools.wraps(func)
        def restored(*args: Any, **kwargs: Any) -> Any:
            task = kwargs.pop(CONTEXT_PARAMETER, None)
            try:
                args, kwargs = spec.restore(args, kwargs)
            except PermanentJobError:
                if task is not None:
                    task.retries = 0  # arguments that do not fit now will not fit on a retry
                raise
            return func(*args, task=task, **kwargs)

        super().__init__(huey, restored, **options)
        _declare(self)
        if spec.single_flight:
            huey.signal(S.SIGNAL_REVOKED, S.SIGNAL_EXPIRED)(self._release_claim)

    def _release_claim(self, signal: str, task: Task, *args: Any) -> None:
        """A run revoked or expired before it ran never reaches the step that releases its claim."""
        if isinstance(task, self.task_class):
            single_flight.release(self.queue, self.spec.name, task.id)

    @property
    def queue(self) -> MeinGymHuey:
        return typing.cast(MeinGymHuey, self.huey)

    def unregister(self) -> bool:
        """Forget the job: on its queue (huey's registry) and among the declarations."""
        _undeclare(self)
        return bool(super().unregister())

    def __call__(self, *args: Any, **kwargs: Any) -> Result:
        """Enqueue the job now (or at ``eta=`` / after ``delay=``); returns huey's Result."""
        options = _options(kwargs)
        args, kwargs = self.spec.check(args, kwargs)
        options["eta"] = resolve_when(options.pop("delay"), options["eta"], self.queue.settings, self.spec.name)
        return self._enqueue(args, kwargs, options)

    def schedule(  # type: ignore[override]
        self,
        args: Any = None,
        kwargs: Mapping[str, Any] | None = None,
        eta: Any = None,
        delay: Any = None,
        **options: Any,
    ) -> Result:
        """huey's ``schedule``: ``args``/``kwargs`` of the job, and an ``eta`` or a ``delay`` (checked)."""
        if eta is None and delay is None:  # huey's shorthand: schedule(60), schedule(timedelta), schedule(datetime)
            if isinstance(args, int | float | timedelta) and not isinstance(args, bool):
                delay, args = args, None
            elif isinstance(args, datetime):
                eta, args = args, None
            else:
                raise InvalidJobRequest(f"{self.spec.name}: schedule() needs eta= or delay=")
        if kwargs is not None and not isinstance(kwargs, Mapping):
            raise InvalidJobRequest(f"{self.spec.name}: schedule() kwargs must be a dict")
        unknown = set(options) - set(HUEY_OPTIONS)
        if unknown:
            raise InvalidJobRequest(f"{self.spec.name}: schedule() got unknown option(s) {', '.join(sorted(unknown))}")
        checked_args, checked_kwargs = self.spec.check(tuple(args or ()), dict(kwargs or {}))
        when = resolve_when(delay, eta, self.queue.settings, self.spec.name)
        return self._enqueue(checked_args, checked_kwargs, {**dict.fromkeys(HUEY_OPTIONS), **options, "eta": when})

    def s(self, *args: Any, **kwargs: Any) -> Task:
        """A checked signature for groups and pipelines (missing arguments may come from the step before)."""
        if self.spec.single_flight:
            raise InvalidJobRequest(
                f"{self.spec.name} runs one at a time: call it or schedule() it; it cannot be a step of a pipeline"
            )
        options = _options(kwargs)
        args, kwargs = self.spec.check(args, kwargs, partial=True)
        options["eta"] = resolve_when(options.pop("delay"), options["eta"], self.queue.settings, self.spec.name)
        return self._signature(args, kwargs, options)

    def _signature(self, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> Task:
        options.pop("delay", None)
        return super().s(*args, **kwargs, **options)

    def _enqueue(self, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any]) -> Result:
        if not self.spec.single_flight:
            return self.queue.enqueue(self._signature(args, kwargs, options))
        job_id = options.get("id") or str(uuid.uuid4())
        holder = single_flight.claim(self.queue, self.spec.name, job_id)
        if holder is not None:
            return ExistingRun(self.queue, self.task_class(id=holder))
        try:
            return self.queue.enqueue(self._signature(args, kwargs, {**options, "id": job_id}))
        except BaseException:
            single_flight.release(self.queue, self.spec.name, job_id)
            raise


_OPTION_NAMES = frozenset(HUEY_OPTIONS)
_NO_OPTIONS = dict.fromkeys(HUEY_OPTIONS)


def _options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take huey's options out of ``kwargs`` (what is left are the job's arguments)."""
    if _OPTION_NAMES.isdisjoint(kwargs):  # the common call: arguments only
        return dict(_NO_OPTIONS)
    return {name: kwargs.pop(name, None) for name in HUEY_OPTIONS}


# --------------------------------------------------------------------------- the declarations


_declared: dict[tuple[str, str], Job] = {}


def _declare(declared: Job) -> None:
    spec = declared.spec
    key = (spec.queue, spec.name)
    if key in _declared and _declared[key] is not declared:
        raise ConfigurationError(f"job {spec.name} is declared twice on {spec.queue}")
    clash = [j for (queue, name), j in _declared.items() if name == spec.name and queue != spec.queue]
    if clash and (spec.public or any(j.spec.public for j in clash)):
        raise ConfigurationError(f"public job {spec.name} must have a name no other queue uses")
    _declared[key] = declared


def _undeclare(declared: Job) -> None:
    key = (declared.spec.queue, declared.spec.name)
    if _declared.get(key) is declared:
        del _declared[key]


def declared() -> list[Job]:
    """Every declared job, in declaration order."""
    return list(_declared.values())


def public_jobs() -> dict[str, Job]:
    """The jobs users may trigger (CLI, API, dashboard), by name, in declaration order."""
    return {j.spec.name: j for j in _declared.values() if j.spec.public}


def job_names() -> tuple[str, ...]:
    """Every name a registry record can have, once: the declared jobs but the periodic housekeeping."""
    return tuple(dict.fromkeys(j.spec.name for j in _declared.values() if not j.spec.periodic))


def job_named(name: str) -> Job:
    """The job called ``name``: a public one, or an internal one whose name only one queue uses."""
    public = public_jobs()
    if name in public:
        return public[name]
    matches = [j for j in _declared.values() if j.spec.name == name]
    if len(matches) == 1:
        return matches[0]
    raise InvalidJobRequest(f"unknown job {name!r}; allowed: {', '.join(public)}")


def job(
    queue: MeinGymHuey,
    name: str,
    *,
    public: bool = False,
    single_flight: bool = False,
    description: str | None = None,
    retry: bool = True,
    due: Callable[[datetime], bool] | None = None,
) -> Callable[[Callable[..., Any]], Job]:
    """Declare the decorated function as job ``name`` on ``queue`` (see the module docstring).

    ``retry=False``: a failure is final; ``due``: a periodic job the scheduler
    asks every minute (see :meth:`MeinGymHuey.job`).
    """

    def decorator(function: Callable[..., Any]) -> Job:
        spec = JobSpec.from_function(
            function,
            name=name,
            queue=queue.name,
            description=description,
            public=public,
            single_flight=single_flight,
            periodic=due is not None,
        )
        declared_job = queue.job(name, retry=retry, due=due, wrapper=functools.partial(Job, spec=spec))(function)
        assert isinstance(declared_job, Job)
        return declared_job

    return decorator
