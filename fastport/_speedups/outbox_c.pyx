# cython: language_level=3, embedsignature=True, annotation_typing=False
"""Outbox and Flusher, compiled twin of ``fastport._speedups.outbox_py``.

Same rules, names, signatures, results and exceptions as the reference twin, whose module and
method docstrings are the documentation. Here an outbox frames each payload straight into the
storage of one ``bytes`` object it owns alone (header bytes written in place, payload copied
with ``memcpy``, grown and finally trimmed with ``_PyBytes_Resize``, as CPython's own
``bytes.join`` builds its result), so queueing a frame creates no Python object and ``flush``
hands that object to ``write`` with no further copy. An idle connection holds no buffer.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_Check, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.stdint cimport uint64_t
from libc.string cimport memcpy

cdef extern from "Python.h":
    # Resizes a bytes object nobody else references; on failure it frees it and sets *pv to NULL.
    int _PyBytes_Resize(PyObject** pv, Py_ssize_t newsize) except -1
    PyObject* _new_bytes "PyBytes_FromStringAndSize"(const char* v, Py_ssize_t size) except NULL
    char* _bytes_data "PyBytes_AS_STRING"(PyObject* o)

__all__ = ["OP_BINARY", "OP_TEXT", "Flusher", "Outbox"]

OP_TEXT = 0x1
OP_BINARY = 0x2

cdef enum:
    _FIN_TEXT = 0x81
    _FIN_BINARY = 0x82
    _MAX_HEADER = 10
    _MIN_CAPACITY = 512


@cython.final
cdef class Outbox:
    """Frames queued for one connection and not written yet."""

    cdef object _write
    cdef Flusher _flusher
    # The bytes being built (owned, never shared until flush), NULL while empty; _cap is its size.
    cdef PyObject* _data
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap

    def __init__(self, write: Callable[[bytes], object], flusher: Flusher) -> None:
        if not isinstance(flusher, Flusher):
            raise TypeError(f"flusher must be a Flusher, not {type(flusher).__name__}")
        self._write = write
        self._flusher = <Flusher>flusher

    def __dealloc__(self):
        self._release()

    def text(self, payload: bytes) -> None:
        """Queue a text frame."""
        if not PyBytes_Check(payload):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        self._frame(_FIN_TEXT, payload)

    def binary(self, payload: bytes) -> None:
        """Queue a binary frame."""
        if not PyBytes_Check(payload):
            raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
        self._frame(_FIN_BINARY, payload)

    cdef int _frame(self, unsigned char first, object payload) except -1:
        cdef Py_ssize_t length = PyBytes_GET_SIZE(payload)
        cdef Py_ssize_t need = self._len + _MAX_HEADER + length
        cdef unsigned char* out
        cdef uint64_t n
        cdef int i
        if need > self._cap:
            self._grow(need)
        if self._len == 0:
            # Marked before anything is queued: if call_soon raises, the outbox stays empty.
            self._flusher._mark(self)
        out = <unsigned char*>_bytes_data(self._data) + self._len
        out[0] = first
        if length < 126:
            out[1] = <unsigned char>length
            out += 2
        elif length < 0x10000:
            out[1] = 126
            out[2] = <unsigned char>(length >> 8)
            out[3] = <unsigned char>length
            out += 4
        else:
            out[1] = 127
            n = <uint64_t>length
            for i in range(8):
                out[2 + i] = <unsigned char>(n >> (56 - 8 * i))
            out += 10
        memcpy(out, PyBytes_AS_STRING(payload), <size_t>length)
        self._len = (out - <unsigned char*>_bytes_data(self._data)) + length
        return 0

    cdef int _grow(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap = self._cap * 2
        if cap < need:
            cap = need
        if cap < _MIN_CAPACITY:
            cap = _MIN_CAPACITY
        if self._data == NULL:
            self._data = _new_bytes(NULL, cap)
        else:
            try:
                _PyBytes_Resize(&self._data, cap)
            except MemoryError:
                self._len = self._cap = 0  # _PyBytes_Resize freed it: the queued frames are lost
                raise
        self._cap = cap
        return 0

    cdef int _flush(self) except -1:
        cdef Py_ssize_t length = self._len
        cdef object data
        if length == 0:
            return 0
        self._len = self._cap = 0
        try:
            _PyBytes_Resize(&self._data, length)
            data = <object>self._data
        finally:
            Py_XDECREF(self._data)  # ``data`` holds the only reference now (or it was freed)
            self._data = NULL
        self._write(data)
        return 0

    cdef void _release(self) noexcept:
        Py_XDECREF(self._data)
        self._data = NULL
        self._len = 0
        self._cap = 0

    def flush(self) -> None:
        """Write everything queued, in one ``write``; nothing when empty."""
        self._flush()

    def discard(self) -> None:
        """Drop everything queued (the connection is gone)."""
        self._release()

    def pending(self) -> int:
        """Bytes queued (headers included) and not written yet."""
        return self._len


@cython.final
cdef class Flusher:
    """Flushes every outbox that got frames, once per loop iteration."""

    cdef object _call_soon
    cdef list _dirty
    cdef object _flush_cb

    def __init__(self, call_soon: Callable[[Callable[[], None]], object]) -> None:
        self._call_soon = call_soon
        self._dirty = []
        self._flush_cb = self.flush

    cdef int _mark(self, object outbox) except -1:
        if not self._dirty:
            self._call_soon(self._flush_cb)
        self._dirty.append(outbox)
        return 0

    def mark(self, outbox: Outbox) -> None:
        """Remember that ``outbox`` has frames to write; schedule a flush if none is pending."""
        self._mark(outbox)

    def flush(self) -> None:
        """Flush all marked outboxes, in the order they were marked."""
        cdef list dirty = self._dirty
        cdef object outbox
        cdef object error = None
        if not dirty:
            return
        self._dirty = []
        for outbox in dirty:
            try:
                if type(outbox) is Outbox:
                    (<Outbox>outbox)._flush()
                else:
                    outbox.flush()
            except Exception as exc:
                if error is None:
                    error = exc
        if error is not None:
            raise error

    def __len__(self) -> int:
        """Outboxes marked since the last flush."""
        return len(self._dirty)
