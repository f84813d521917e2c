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

class WorkloadKey(_message.Message):
    __slots__ = ("network", "container_id", "ifname")
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    IFNAME_FIELD_NUMBER: _ClassVar[int]
    network: str
    container_id: str
    ifname: str
    def __init__(self, network: _Optional[str] = ..., container_id: _Optional[str] = ..., ifname: _Optional[str] = ...) -> None: ...

class PortMapping(_message.Message):
    __slots__ = ("host_port", "container_port", "protocol", "host_ip")
    HOST_PORT_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HOST_IP_FIELD_NUMBER: _ClassVar[int]
    host_port: int
    container_port: int
    protocol: str
    host_ip: str
    def __init__(self, host_port: _Optional[int] = ..., container_port: _Optional[int] = ..., protocol: _Optional[str] = ..., host_ip: _Optional[str] = ...) -> None: ...

class AttachWorkloadRequest(_message.Message):
    __slots__ = ("ni", "key", "netns", "interface", "mac", "hostname", "app", "port_mappings", "lease_timeout_ms")
    NI_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    PORT_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    LEASE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    ni: str
    key: WorkloadKey
    netns: str
    interface: str
    mac: str
    hostname: str
    app: str
    port_mappings: _containers.RepeatedCompositeFieldContainer[PortMapping]
    lease_timeout_ms: int
    def __init__(self, ni: _Optional[str] = ..., key: _Optional[_Union[WorkloadKey, _Mapping]] = ..., netns: _Optional[str] = ..., interface: _Optional[str] = ..., mac: _Optional[str] = ..., hostname: _Optional[str] = ..., app: _Optional[str] = ..., port_mappings: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ..., lease_timeout_ms: _Optional[int] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("dst", "gw")
    DST_FIELD_NUMBER: _ClassVar[int]
    GW_FIELD_NUMBER: _ClassVar[int]
    dst: str
    gw: str
    def __init__(self, dst: _Optional[str] = ..., gw: _Optional[str] = ...) -> None: ...

class Dns(_message.Message):
    __slots__ = ("nameservers", "domain", "search")
    NAMESERVERS_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    nameservers: _containers.RepeatedScalarFieldContainer[str]
    domain: str
    search: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nameservers: _Optional[_Iterable[str]] = ..., domain: _Optional[str] = ..., search: _Optional[_Iterable[str]] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("ni", "key", "netns", "interface", "host_ifname", "mac", "mtu", "address", "gateway", "routes", "dns", "port_mappings")
    NI_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    NETNS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    HOST_IFNAME_FIELD_NUMBER: _ClassVar[int]
    MAC_FIELD_NUMBER: _ClassVar[int]
    MTU_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    DNS_FIELD_NUMBER: _ClassVar[int]
    PORT_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    ni: str
    key: WorkloadKey
    netns: str
    interface: str
    host_ifname: str
    mac: str
    mtu: int
    address: str
    gateway: str
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    dns: Dns
    port_mappings: _containers.RepeatedCompositeFieldContainer[PortMapping]
    def __init__(self, ni: _Optional[str] = ..., key: _Optional[_Union[WorkloadKey, _Mapping]] = ..., netns: _Optional[str] = ..., interface: _Optional[str] = ..., host_ifname: _Optional[str] = ..., mac: _Optional[str] = ..., mtu: _Optional[int] = ..., address: _Optional[str] = ..., gateway: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ..., dns: _Optional[_Union[Dns, _Mapping]] = ..., port_mappings: _Optional[_Iterable[_Union[PortMapping, _Mapping]]] = ...) -> None: ...

class AttachWorkloadResponse(_message.Message):
    __slots__ = ("attachment",)
    ATTACHMENT_FIELD_NUMBER: _ClassVar[int]
    attachment: Attachment
    def __init__(self, attachment: _Optional[_Union[Attachment, _Mapping]] = ...) -> None: ...

class DetachWorkloadRequest(_message.Message):
    __slots__ = ("ni", "key")
    NI_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ni: str
    key: WorkloadKey
    def __init__(self, ni: _Optional[str] = ..., key: _Optional[_Union[WorkloadKey, _Mapping]] = ...) -> None: ...

class DetachWorkloadResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class CheckWorkloadRequest(_message.Message):
    __slots__ = ("ni", "key")
    NI_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ni: str
    key: WorkloadKey
    def __init__(self, ni: _Optional[str] = ..., key: _Optional[_Union[WorkloadKey, _Mapping]] = ...) -> None: ...

class CheckWorkloadResponse(_message.Message):
    __slots__ = ("known", "intended", "problems")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    INTENDED_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    known: bool
    intended: Attachment
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, known: _Optional[bool] = ..., intended: _Optional[_Union[Attachment, _Mapping]] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class GcWorkloadsRequest(_message.Message):
    __slots__ = ("ni", "network", "valid")
    NI_FIELD_NUMBER: _ClassVar[int]
    NETWORK_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    ni: str
    network: str
    valid: _containers.RepeatedCompositeFieldContainer[WorkloadKey]
    def __init__(self, ni: _Optional[str] = ..., network: _Optional[str] = ..., valid: _Optional[_Iterable[_Union[WorkloadKey, _Mapping]]] = ...) -> None: ...

class GcWorkloadsResponse(_message.Message):
    __slots__ = ("removed", "errors")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    removed: _containers.RepeatedCompositeFieldContainer[WorkloadKey]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, removed: _Optional[_Iterable[_Union[WorkloadKey, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class NiReadyRequest(_message.Message):
    __slots__ = ("ni",)
    NI_FIELD_NUMBER: _ClassVar[int]
    ni: str
    def __init__(self, ni: _Optional[str] = ...) -> None: ...

class NiReadyResponse(_message.Message):
    __slots__ = ("ready", "reason", "degraded")
    READY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    reason: str
    degraded: bool
    def __init__(self, ready: _Optional[bool] = ..., reason: _Optional[str] = ..., degraded: _Optional[bool] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("changes", "rolling")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    ROLLING_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedScalarFieldContainer[str]
    rolling: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, changes: _Optional[_Iterable[str]] = ..., rolling: _Optional[_Iterable[str]] = ...) -> None: ...

class RollRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Optional[_Iterable[str]] = ...) -> None: ...

class NIRoll(_message.Message):
    __slots__ = ("ni", "old_image", "new_image", "result", "downtime_seconds", "error")
    NI_FIELD_NUMBER: _ClassVar[int]
    OLD_IMAGE_FIELD_NUMBER: _ClassVar[int]
    NEW_IMAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    DOWNTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ni: str
    old_image: str
    new_image: str
    result: str
    downtime_seconds: float
    error: str
    def __init__(self, ni: _Optional[str] = ..., old_image: _Optional[str] = ..., new_image: _Optional[str] = ..., result: _Optional[str] = ..., downtime_seconds: _Optional[float] = ..., error: _Optional[str] = ...) -> None: ...

class RollResponse(_message.Message):
    __slots__ = ("nis", "stopped", "pending")
    NIS_FIELD_NUMBER: _ClassVar[int]
    STOPPED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    nis: _containers.RepeatedCompositeFieldContainer[NIRoll]
    stopped: str
    pending: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nis: _Optional[_Iterable[_Union[NIRoll, _Mapping]]] = ..., stopped: _Optional[str] = ..., pending: _Optional[_Iterable[str]] = ...) -> None: ...

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
