# Cython declarations for wire.py ("augmenting .pxd"): wire.py stays the pure-Python
# reference and runs unchanged without Cython; compiled, these give the label walks and
# offsets C integers and direct byte indexing (bounds still checked: a hostile packet
# raises the same IndexError/WireError as in Python). Packets are bytes (what recvfrom,
# the TCP/DoT framing and DoH give); the public readers copy a bytearray (dnslib's pack)
# into bytes first, in both modes.
import cython

@cython.locals(i=cython.Py_ssize_t, n=cython.Py_ssize_t, end=cython.Py_ssize_t, raw=bytes, labels=list)
cpdef str name_to_text(bytes qname_wire)

@cython.locals(total=cython.Py_ssize_t, end=cython.Py_ssize_t, n=cython.Py_ssize_t)
cdef Py_ssize_t _read_question_name(bytes data, Py_ssize_t offset) except -1

@cython.locals(end=cython.Py_ssize_t, hops=cython.Py_ssize_t, n=cython.Py_ssize_t)
cpdef Py_ssize_t skip_name(bytes data, Py_ssize_t offset) except -1

@cython.locals(packet=bytes, qend_name=cython.Py_ssize_t, qend=cython.Py_ssize_t,
               offset=cython.Py_ssize_t, name_end=cython.Py_ssize_t, next_offset=cython.Py_ssize_t,
               rdlen=cython.Py_ssize_t)
cpdef parse_query(data)

@cython.locals(packet=bytes, qend=cython.Py_ssize_t)
cpdef Py_ssize_t question_end(data) except -1

@cython.locals(packet=bytes, offset=cython.Py_ssize_t, end=cython.Py_ssize_t, start=cython.Py_ssize_t,
               name_end=cython.Py_ssize_t, rdlen=cython.Py_ssize_t, index=cython.Py_ssize_t,
               total=cython.Py_ssize_t, body_start=cython.Py_ssize_t, body_end=cython.Py_ssize_t)
cpdef scan_reply(data, Py_ssize_t qend, bint cnames=*)
