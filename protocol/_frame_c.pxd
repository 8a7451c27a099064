# Types for compiling protocol/frame.py as huaico.protocol._frame_c (see setup.py).
cimport cython
from libc.stdint cimport int64_t, uint64_t

cdef int64_t _INT64_MAX
cdef bytes _MAC0_HEAD, _MAC0_USUAL
cdef int64_t KEY_STRIDE, MAX_CHANNEL, MAX_INDEX, Q_MAX, MAX_READINGS, MAX_KID, MAX_BYTES, Q_OK, VERSION
cdef int64_t VERSION_EPOCH, MAX_EPOCH, EPOCH_SHIFT, MAX_COUNTER
cdef int64_t TAG_MAC0, ALG_HMAC_256_64, HDR_ALG, HDR_KID, TAG_LEN


@cython.final
cdef class Frame:
    cdef public object kid
    cdef public object epoch
    cdef public object seq
    cdef public object time
    cdef public object flags
    cdef public list rows
    cdef public bint signed


# Class directives such as no_gc or freelist written here do not reach the
# class in frame.py (Cython 3.3 gives it the .py's directives), so none are
# given. _Scanner stays out of the cyclic GC because no field of it can hold a
# cycle: kid is typed bytes for that reason.
@cython.final
cdef class _Scanner:
    cdef bytes buf
    cdef Py_ssize_t pos
    cdef Py_ssize_t end
    cdef bytes kid
    cdef bint signed

    cdef fail(self, reason, detail=*)

    @cython.locals(pos=cython.Py_ssize_t, ib=int)
    cdef inline int64_t head(self, int major) except? -1

    @cython.locals(pos=cython.Py_ssize_t, ib=int, info=int, size=int, i=int, arg=uint64_t)
    cdef int64_t long_head(self, int major) except? -1

    cdef int64_t int_(self) except? -1

    @cython.locals(length=int64_t, start=Py_ssize_t)
    cdef Py_ssize_t span(self, int major) except -1

    @cython.locals(major=int, info=int, count=cython.longlong, _=cython.longlong)
    cdef skip(self, int depth)


cdef int _head_size(Py_ssize_t length)

@cython.locals(buf=bytes, kid=bytes, raw=cython.p_const_char, s=_Scanner, prot_start=cython.Py_ssize_t, prot_end=cython.Py_ssize_t,
               payload_start=cython.Py_ssize_t, payload_end=cython.Py_ssize_t, tag_start=cython.Py_ssize_t,
               tag_end=cython.Py_ssize_t, head_start=cython.Py_ssize_t, start=cython.Py_ssize_t, alg=cython.longlong, label=cython.longlong, _=cython.longlong)
cdef _Scanner _unwrap(data, key_for, bytes aad)

@cython.locals(s=_Scanner, fields=cython.longlong,
               version=cython.longlong, seq=cython.longlong, base=cython.longlong, flags=cython.longlong,
               count=cython.longlong, key=cython.longlong, channel=cython.longlong, dt=cython.longlong,
               value=cython.longlong, at_base=object, result=Frame, at=cython.longlong, quality=cython.longlong, rows=list, row=tuple,
               _=cython.longlong, epoch=cython.longlong, mask=cython.longlong, bit=cython.longlong,
               other=tuple, earlier=cython.longlong)
cpdef Frame decode_frame(data, key_for)
