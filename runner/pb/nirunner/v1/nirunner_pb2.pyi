from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VersionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VersionResponse(_message.Message):
    __slots__ = ("version", "containerd_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTAINERD_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    containerd_version: str
    def __init__(self, version: _Optional[str] = ..., containerd_version: _Optional[str] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("source", "yaml")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    source: str
    yaml: str
    def __init__(self, source: _Optional[str] = ..., yaml: _Optional[str] = ...) -> None: ...

class ApplyRequest(_message.Message):
    __slots__ = ("documents", "dry_run", "verbose")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    VERBOSE_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    dry_run: bool
    verbose: bool
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., dry_run: _Optional[bool] = ..., verbose: _Optional[bool] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("ni", "action", "detail")
    NI_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ni: str
    action: str
    detail: str
    def __init__(self, ni: _Optional[str] = ..., action: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ApplyResponse(_message.Message):
    __slots__ = ("changes", "ops", "writes")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    ops: _containers.RepeatedScalarFieldContainer[str]
    writes: int
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., ops: _Optional[_Iterable[str]] = ..., writes: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "ops")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    OPS_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    ops: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., ops: _Optional[_Iterable[str]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("names", "detail")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    detail: bool
    def __init__(self, names: _Optional[_Iterable[str]] = ..., detail: _Optional[bool] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("ni_json", "source_json")
    NI_JSON_FIELD_NUMBER: _ClassVar[int]
    SOURCE_JSON_FIELD_NUMBER: _ClassVar[int]
    ni_json: _containers.RepeatedScalarFieldContainer[str]
    source_json: str
    def __init__(self, ni_json: _Optional[_Iterable[str]] = ..., source_json: _Optional[str] = ...) -> None: ...

class AttachRequest(_message.Message):
    __slots__ = ("ni", "netns", "ifname", "mac", "hostname", "app")
    NI_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    ni: str
    netns: str
    ifname: str
    mac: str
    hostname: str
    app: str
    def __init__(self, ni: _Optional[str] = ..., netns: _Optional[str] = ..., ifname: _Optional[str] = ..., mac: _Optional[str] = ..., hostname: _Optional[str] = ..., app: _Optional[str] = ...) -> None: ...

class AttachResponse(_message.Message):
    __slots__ = ("host_ifname", "mac")
    HOST_IFNAME_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    host_ifname: str
    mac: str
    def __init__(self, host_ifname: _Optional[str] = ..., mac: _Optional[str] = ...) -> None: ...

class DetachRequest(_message.Message):
    __slots__ = ("ni", "netns", "ifname")
    NI_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    ni: str
    netns: str
    ifname: str
    def __init__(self, ni: _Optional[str] = ..., netns: _Optional[str] = ..., ifname: _Optional[str] = ...) -> None: ...

class DetachResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class EventsRequest(_message.Message):
    __slots__ = ("follow", "after")
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    follow: bool
    after: int
    def __init__(self, follow: _Optional[bool] = ..., after: _Optional[int] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("seq", "time", "kind", "ni", "message", "level", "fields_json")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NI_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time: float
    kind: str
    ni: str
    message: str
    level: str
    fields_json: str
    def __init__(self, seq: _Optional[int] = ..., time: _Optional[float] = ..., kind: _Optional[str] = ..., ni: _Optional[str] = ..., message: _Optional[str] = ..., level: _Optional[str] = ..., fields_json: _Optional[str] = ...) -> None: ...

class FlowsRequest(_message.Message):
    __slots__ = ("ni", "follow", "app", "last")
    NI_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    ni: str
    follow: bool
    app: str
    last: int
    def __init__(self, ni: _Optional[str] = ..., follow: _Optional[bool] = ..., app: _Optional[str] = ..., last: _Optional[int] = ...) -> None: ...

class FlowRecord(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...
