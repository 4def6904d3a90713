# cython: language_level=3, boundscheck=False, wraparound=False
"""Batched UDP socket I/O on Linux: recvmmsg(2) and sendmmsg(2), up to 64 datagrams per system call.

`Receiver.recv(fd)` reads what is queued on a non-blocking socket in one call and
returns `(data, addr)` pairs, `addr` as the socket module gives it ((ip, port) for
IPv4, (ip, port, flowinfo, scope_id) for IPv6), or the datagrams alone for a
connected socket. A datagram longer than the receiver's buffer is dropped and
counted (`truncated`), never handed on cut short.

`Sender` queues replies (`queue(data, addr, tag)`) and `flush(fd)` sends them with
as few sendmmsg calls as the kernel allows: a message the kernel refuses (an
unreachable address, an error queued by an ICMP message) is skipped and reported
in `failed` as (tag, errno); when the socket's send buffer is full (EAGAIN) the
rest stays queued for the next flush.

Both release the GIL around the system call. Neither is thread-safe: one object
is used by one thread (the engine's I/O loop).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.errno cimport EAGAIN, EINTR, errno
from libc.string cimport memcpy, memset


cdef extern from "<sys/uio.h>":
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>":
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct timespec:
        pass
    int recvmmsg(int fd, mmsghdr *vec, unsigned int vlen, int flags, timespec *timeout) nogil
    int sendmmsg(int fd, mmsghdr *vec, unsigned int vlen, int flags) nogil
    int AF_INET
    int AF_INET6
    int MSG_DONTWAIT
    int MSG_TRUNC

cdef extern from "<netinet/in.h>":
    struct in_addr:
        unsigned int s_addr
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        unsigned int sin6_flowinfo
        in6_addr sin6_addr
        unsigned int sin6_scope_id
    unsigned short ntohs(unsigned short)
    unsigned short htons(unsigned short)
    unsigned int ntohl(unsigned int)
    unsigned int htonl(unsigned int)

cdef extern from "<arpa/inet.h>":
    int inet_pton(int af, const char *src, void *dst)
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)

cdef extern from "<netdb.h>":
    int getnameinfo(const sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                    char *serv, socklen_t servlen, int flags)
    int NI_NUMERICHOST
    int NI_MAXHOST

cdef extern from "<net/if.h>":
    unsigned int if_nametoindex(const char *ifname)


MAX_MESSAGES = 64
# Addresses seen recently, as the tuples the socket module would build; a client
# sends many queries, and building the tuple costs more than a dict lookup.
cdef enum:
    ADDR_CACHE_MAX = 4096


cdef object _address(sockaddr_storage *ss, socklen_t namelen, dict cache):
    """The socket module's address tuple for `ss`, through `cache`."""
    cdef bytes key = PyBytes_FromStringAndSize(<char *>ss, namelen)
    cdef object addr = cache.get(key)
    if addr is not None:
        return addr
    cdef char host[64]
    cdef sockaddr_in *v4
    cdef sockaddr_in6 *v6
    if ss.ss_family == AF_INET:
        v4 = <sockaddr_in *>ss
        inet_ntop(AF_INET, &v4.sin_addr, host, sizeof(host))
        addr = (host.decode("ascii"), ntohs(v4.sin_port))
    elif ss.ss_family == AF_INET6:
        v6 = <sockaddr_in6 *>ss
        # getnameinfo, as the socket module does, so a link-local address keeps its %scope.
        if getnameinfo(<sockaddr *>ss, namelen, host, sizeof(host), NULL, 0, NI_NUMERICHOST) != 0:
            inet_ntop(AF_INET6, &v6.sin6_addr, host, sizeof(host))
        addr = (host.decode("ascii"), ntohs(v6.sin6_port), ntohl(v6.sin6_flowinfo), v6.sin6_scope_id)
    else:
        return None
    if len(cache) >= ADDR_CACHE_MAX:
        cache.clear()
    cache[key] = addr
    return addr


cdef class Receiver:
    """Preallocated buffers for `count` datagrams of up to `size` bytes each.

    The buffers are reused by every call (the data is copied into new bytes
    objects), so one Receiver can serve several sockets of the same thread.
    """

    cdef mmsghdr *msgs
    cdef iovec *iovs
    cdef sockaddr_storage *names
    cdef char *buffers
    cdef readonly unsigned int count
    cdef readonly size_t size
    cdef readonly unsigned long long truncated  # datagrams dropped for being longer than `size`
    cdef readonly unsigned long long calls  # recvmmsg calls made
    cdef dict _addresses

    def __cinit__(self, unsigned int count=MAX_MESSAGES, size_t size=65535):
        if count < 1 or count > 1024 or size < 12:
            raise ValueError("count must be 1..1024 and size at least 12")
        self.count = count
        self.size = size
        self._addresses = {}
        self.msgs = <mmsghdr *>PyMem_Malloc(count * sizeof(mmsghdr))
        self.iovs = <iovec *>PyMem_Malloc(count * sizeof(iovec))
        self.names = <sockaddr_storage *>PyMem_Malloc(count * sizeof(sockaddr_storage))
        # Untouched pages of a large buffer cost address space, not memory.
        self.buffers = <char *>PyMem_Malloc(count * size)
        if not self.msgs or not self.iovs or not self.names or not self.buffers:
            raise MemoryError()
        memset(self.msgs, 0, count * sizeof(mmsghdr))
        cdef unsigned int i
        for i in range(count):
            self.iovs[i].iov_base = self.buffers + i * size
            self.iovs[i].iov_len = size
            self.msgs[i].msg_hdr.msg_iov = &self.iovs[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1

    def __dealloc__(self):
        PyMem_Free(self.msgs)
        PyMem_Free(self.iovs)
        PyMem_Free(self.names)
        PyMem_Free(self.buffers)

    def recv(self, int fd, bint addresses=True):
        """Read up to `count` datagrams queued on non-blocking `fd` in one system call.

        Returns a list of (data, addr) pairs, or of data alone when `addresses` is
        false (a connected socket); empty when nothing is queued. Raises OSError
        for an error the socket reports (an ICMP error queued on it, say).
        """
        cdef unsigned int i
        cdef int n
        cdef int err = 0
        cdef mmsghdr *msg
        for i in range(self.count):
            msg = &self.msgs[i]
            if addresses:
                msg.msg_hdr.msg_name = &self.names[i]
                msg.msg_hdr.msg_namelen = sizeof(sockaddr_storage)
            else:
                msg.msg_hdr.msg_name = NULL
                msg.msg_hdr.msg_namelen = 0
            msg.msg_hdr.msg_flags = 0
            msg.msg_len = 0
        while True:
            self.calls += 1  # before the call: whoever sees its result sees it counted
            with nogil:
                n = recvmmsg(fd, self.msgs, self.count, MSG_DONTWAIT, NULL)
                if n < 0:
                    err = errno
            if n >= 0 or err != EINTR:
                break
        if n < 0:
            if err == EAGAIN:
                return []
            raise OSError(err, _strerror(err))
        cdef list out = []
        cdef bytes data
        for i in range(<unsigned int>n):
            msg = &self.msgs[i]
            if msg.msg_hdr.msg_flags & MSG_TRUNC:
                self.truncated += 1
                continue
            data = PyBytes_FromStringAndSize(<char *>self.iovs[i].iov_base, msg.msg_len)
            if addresses:
                out.append((data, _address(&self.names[i], msg.msg_hdr.msg_namelen, self._addresses)))
            else:
                out.append(data)
        return out


cdef int _sockaddr_from(object addr, sockaddr_storage *ss, socklen_t *namelen) except -1:
    """Fill `ss` from a socket-module address tuple; ValueError when it is not a numeric one."""
    cdef sockaddr_in *v4
    cdef sockaddr_in6 *v6
    cdef bytes host
    cdef object text = addr[0]
    cdef int port = addr[1]
    cdef bytes scope
    if port < 0 or port > 65535:
        raise OverflowError("port must be 0-65535")
    memset(ss, 0, sizeof(sockaddr_storage))
    if ":" in text:
        if "%" in text:
            text, scope_name = text.split("%", 1)
        else:
            scope_name = None
        host = text.encode("ascii")
        v6 = <sockaddr_in6 *>ss
        if inet_pton(AF_INET6, host, &v6.sin6_addr) != 1:
            raise ValueError(f"not a numeric IPv6 address: {addr[0]!r}")
        v6.sin6_family = AF_INET6
        v6.sin6_port = htons(port)
        if len(addr) > 2:
            v6.sin6_flowinfo = htonl(addr[2])
        if len(addr) > 3:
            v6.sin6_scope_id = addr[3]
        if scope_name is not None and not v6.sin6_scope_id:
            scope = scope_name.encode("ascii")
            v6.sin6_scope_id = if_nametoindex(scope) if not scope.isdigit() else int(scope)
        namelen[0] = sizeof(sockaddr_in6)
    else:
        host = text.encode("ascii")
        v4 = <sockaddr_in *>ss
        if inet_pton(AF_INET, host, &v4.sin_addr) != 1:
            raise ValueError(f"not a numeric IPv4 address: {addr[0]!r}")
        v4.sin_family = AF_INET
        v4.sin_port = htons(port)
        namelen[0] = sizeof(sockaddr_in)
    return 0


cdef class Sender:
    """A queue of up to `count` datagrams for one socket, sent by `flush(fd)` with sendmmsg."""

    cdef mmsghdr *msgs
    cdef iovec *iovs
    cdef sockaddr_storage *names
    cdef readonly unsigned int count
    cdef unsigned int head  # first queued message not sent yet
    cdef unsigned int tail  # one past the last queued message
    cdef list _data  # the bytes objects the iovecs point into, kept alive until sent
    cdef list _tags
    cdef dict _sockaddrs  # address tuple -> its sockaddr bytes: clients ask many times
    cdef readonly list failed  # (tag, errno) of the messages the last flush() could not send
    cdef readonly unsigned long long calls  # sendmmsg calls made

    def __cinit__(self, unsigned int count=MAX_MESSAGES):
        if count < 1 or count > 1024:
            raise ValueError("count must be 1..1024")
        self.count = count
        self.msgs = <mmsghdr *>PyMem_Malloc(count * sizeof(mmsghdr))
        self.iovs = <iovec *>PyMem_Malloc(count * sizeof(iovec))
        self.names = <sockaddr_storage *>PyMem_Malloc(count * sizeof(sockaddr_storage))
        if not self.msgs or not self.iovs or not self.names:
            raise MemoryError()
        memset(self.msgs, 0, count * sizeof(mmsghdr))
        self._data = [None] * count
        self._tags = [None] * count
        self._sockaddrs = {}
        self.failed = []

    def __dealloc__(self):
        PyMem_Free(self.msgs)
        PyMem_Free(self.iovs)
        PyMem_Free(self.names)

    def __len__(self):
        return self.tail - self.head

    @property
    def full(self):
        return self.tail - self.head >= self.count

    def queue(self, bytes data, object addr=None, object tag=None):
        """Queue `data` for `addr` (None on a connected socket). Returns False when the
        queue is full (flush first). Raises ValueError for an address that is not
        numeric, as the engine's are; nothing is queued then."""
        cdef unsigned int i
        cdef mmsghdr *msg
        cdef object packed
        if self.tail >= self.count:
            if self.head == 0:
                return False
            self._compact()
        i = self.tail
        msg = &self.msgs[i]
        if addr is None:
            msg.msg_hdr.msg_name = NULL
            msg.msg_hdr.msg_namelen = 0
        else:
            packed = self._sockaddrs.get(addr)
            if packed is None:
                _sockaddr_from(addr, &self.names[i], &msg.msg_hdr.msg_namelen)
                if len(self._sockaddrs) >= ADDR_CACHE_MAX:
                    self._sockaddrs.clear()
                self._sockaddrs[addr] = PyBytes_FromStringAndSize(<char *>&self.names[i], msg.msg_hdr.msg_namelen)
            else:
                memcpy(&self.names[i], PyBytes_AS_STRING(packed), PyBytes_GET_SIZE(packed))
                msg.msg_hdr.msg_namelen = <socklen_t>PyBytes_GET_SIZE(packed)
            msg.msg_hdr.msg_name = &self.names[i]
        self.iovs[i].iov_base = PyBytes_AS_STRING(data)
        self.iovs[i].iov_len = PyBytes_GET_SIZE(data)
        msg.msg_hdr.msg_iov = &self.iovs[i]
        msg.msg_hdr.msg_iovlen = 1
        msg.msg_hdr.msg_control = NULL
        msg.msg_hdr.msg_controllen = 0
        msg.msg_hdr.msg_flags = 0
        self._data[i] = data
        self._tags[i] = tag
        self.tail = i + 1
        return True

    cdef void _compact(self):
        """Move the unsent messages to the front of the arrays."""
        cdef unsigned int n = self.tail - self.head
        cdef unsigned int i, src
        for i in range(n):
            src = self.head + i
            self.msgs[i] = self.msgs[src]
            self.iovs[i] = self.iovs[src]
            self.names[i] = self.names[src]
            self.msgs[i].msg_hdr.msg_iov = &self.iovs[i]
            if self.msgs[i].msg_hdr.msg_name != NULL:
                self.msgs[i].msg_hdr.msg_name = &self.names[i]
            self._data[i] = self._data[src]
            self._tags[i] = self._tags[src]
        for i in range(n, self.tail):
            self._data[i] = None
            self._tags[i] = None
        self.head = 0
        self.tail = n

    def flush(self, int fd):
        """Send the queued messages on non-blocking `fd`; returns how many were sent.

        A message the kernel refuses is dropped and listed in `failed` as (tag,
        errno); on EAGAIN (send buffer full) the rest stays queued (`len(self)`)
        for the next flush.
        """
        cdef int n
        cdef int err = 0
        cdef unsigned int sent = 0
        cdef unsigned int i
        self.failed = []
        while self.head < self.tail:
            self.calls += 1  # before the call: whoever sees its result sees it counted
            with nogil:
                n = sendmmsg(fd, &self.msgs[self.head], self.tail - self.head, MSG_DONTWAIT)
                if n < 0:
                    err = errno
            if n > 0:
                for i in range(self.head, self.head + n):
                    self._data[i] = None
                    self._tags[i] = None
                self.head += n
                sent += n
                continue
            if err == EINTR:
                continue
            if err == EAGAIN:
                break
            # The kernel refused the first message: report it and go on with the next.
            self.failed.append((self._tags[self.head], err))
            self._data[self.head] = None
            self._tags[self.head] = None
            self.head += 1
        if self.head >= self.tail:
            self.head = 0
            self.tail = 0
        return sent

    def clear(self):
        """Drop every queued message; returns how many there were."""
        cdef unsigned int n = self.tail - self.head
        cdef unsigned int i
        for i in range(self.count):
            self._data[i] = None
            self._tags[i] = None
        self.head = 0
        self.tail = 0
        return n


cdef str _strerror(int err):
    import os

    return os.strerror(err)
