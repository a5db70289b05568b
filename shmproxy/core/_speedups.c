/* Compiled fast paths for the ring's two hot loops, both optional: Python is the reference.
 *
 * TickWriter encodes an LTP or Quote tick dict and appends it to the ring in one call. It does what
 * publisher.py's fast path and RingWriter.write do for the common case (an exact dict, a known
 * symbol, plain float/int values) and declines everything else by returning 0, so that the Python
 * code, which validates and names bad fields, handles it. Ring protocol (docs/shm-format.md): under
 * the ring writer's thread mutex and the writers' file lock, take write_seq + 1, skip sequences an
 * earlier writer completed but did not publish, store the slot's BEGIN marker, then body, zeroed
 * depth and END marker, then publish write_seq. Then, as RingWriter does: wake parked readers after
 * a lull, and heartbeat (through RingWriter) every interval.
 *
 * TickReader turns complete records at a cursor into Tick objects, as RingReader.read plus
 * Tick.from_slot do, and stops at the first slot that is not ready or was lapped, for RingReader's
 * Python code to handle.
 *
 * tests/test_speedups.py checks that each path gives what the Python path gives, byte for byte.
 * After editing this file, run `pip install -e .` again: an editable install keeps the old build.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#ifdef __linux__
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the ring layout is little-endian; use the pure-Python path on this machine"
#endif

/* Layout version 1 (shmproxy/core/layout.py). The constructor checks these against layout.py. */
#define HEADER_SIZE 4096
#define WRITE_SEQ_OFFSET 64
#define SLOT_SIZE 448
#define SLOT_END_OFFSET 440
#define BODY_OFFSET 8
#define EXCHANGE_BYTES 16
#define SYMBOL_BYTES 40
#define MODE_LTP 1
#define MODE_QUOTE 2
#define NS_PER_MS 1000000

typedef struct {
    int64_t publish_ns;
    int64_t exchange_ns;
    uint8_t mode;
    uint8_t exchange_length;
    uint8_t symbol_length;
    uint8_t pad[5];
    char exchange[EXCHANGE_BYTES];
    char symbol[SYMBOL_BYTES];
    double prices[7];      /* ltp, open, high, low, close, average_price, percent_change */
    int64_t quantities[6]; /* volume, last_quantity, last_trade_time, oi, total_buy_qty, total_sell_qty */
} Body;

_Static_assert(sizeof(Body) == 184, "Body must match layout.BODY_FORMAT");
_Static_assert(offsetof(Body, prices) == 80, "Body must match layout.BODY_FORMAT");

enum { LTP, OPEN, HIGH, LOW, CLOSE, AVERAGE, CHANGE };
enum { VOLUME, LAST_QUANTITY, LAST_TRADE_TIME, OI, BUY_QUANTITY, SELL_QUANTITY };

/* Dict keys, interned once. Each field lists the OpenAlgo name first, then the SDK's spelling. */
static PyObject *k_exchange, *k_mode, *k_default, *k_depth, *k_timestamp, *k_ltp;
static PyObject *price_keys[7][2];
static PyObject *quantity_keys[6][2];

typedef struct {
    PyObject_HEAD
    Py_buffer view;      /* the segment's mapping; held until close() */
    int fd;              /* the segment's file: the writers' flock */
    uint64_t capacity;
    PyObject *names;     /* NameCodec's cache: (exchange or None, symbol) -> (ex_len, sym_len, ex, sym) */
    PyObject *modes;     /* publisher._MODES: mode value -> 1/2/3 or the quote-or-depth marker */
    PyObject *quote_or_depth;
    PyObject *acquire;   /* the RingWriter's thread mutex, bound acquire and release */
    PyObject *release;
    PyObject *beat;      /* RingWriter's heartbeat, called with the publish time every beat_interval */
    int64_t beat_interval, wake_gap, last_beat, last_write;
    unsigned long long records;
} TickWriter;

/* A value of the dict: returns 1 with *out borrowed (NULL when absent), 0 when it must be declined. */
static int lookup(PyObject *data, PyObject *key, PyObject **out) {
    *out = PyDict_GetItemWithError(data, key);
    if (*out == Py_None)
        *out = NULL;
    return !PyErr_Occurred();
}

/* Python's ``float(value)`` for exact floats and ints; 0 to decline anything else. */
static int as_double(PyObject *value, double *out) {
    if (PyFloat_CheckExact(value)) {
        *out = PyFloat_AS_DOUBLE(value);
        return 1;
    }
    if (PyLong_CheckExact(value)) {
        *out = PyLong_AsDouble(value);
        if (*out == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return 1;
    }
    return 0;
}

/* Python's ``int(value)`` for exact ints and finite floats that fit 64 bits; 0 to decline. */
static int as_int64(PyObject *value, int64_t *out) {
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow || (v == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
        *out = v;
        return 1;
    }
    if (PyFloat_CheckExact(value)) {
        double v = PyFloat_AS_DOUBLE(value);
        if (!isfinite(v) || v <= -9223372036854775808.0 || v >= 9223372036854775808.0)
            return 0;
        *out = (int64_t)v; /* truncates toward zero, as int() does */
        return 1;
    }
    return 0;
}

/* ``data.get(a) or data.get(b) or 0.0`` as a float: 1 with *out set, 0 to decline. */
static int price_field(PyObject *data, PyObject *const keys[2], double *out) {
    *out = 0.0;
    for (int i = 0; i < 2 && keys[i] != NULL; i++) {
        PyObject *value;
        double v;
        if (!lookup(data, keys[i], &value))
            return 0;
        if (value == NULL)
            continue;
        if (!as_double(value, &v))
            return 0;
        if (v != 0.0) { /* a zero (or -0.0) is falsy: Python's ``or`` moves on, ending at 0.0 */
            *out = v;
            return 1;
        }
    }
    return 1;
}

/* ``int(data.get(a) or data.get(b) or 0)``, which must lie in [0, 2**63): 1 with *out set, 0 to decline. */
static int quantity_field(PyObject *data, PyObject *const keys[2], int64_t *out) {
    *out = 0;
    for (int i = 0; i < 2 && keys[i] != NULL; i++) {
        PyObject *value;
        if (!lookup(data, keys[i], &value))
            return 0;
        if (value == NULL)
            continue;
        if (PyFloat_CheckExact(value) && PyFloat_AS_DOUBLE(value) == 0.0)
            continue; /* falsy: Python's ``or`` moves on (0.5 is truthy, and int(0.5) is 0) */
        if (!as_int64(value, out) || *out < 0)
            return 0;
        if (*out != 0 || PyFloat_CheckExact(value))
            return 1;
    }
    return 1;
}

/* The record mode: 1 or 2 with *mode set, 0 to decline (Depth, an unknown mode, or an error). */
static int tick_mode(TickWriter *self, PyObject *data, int *mode) {
    PyObject *raw = PyDict_GetItemWithError(data, k_mode); /* None stays None: _MODES maps it */
    if (raw == NULL && PyErr_Occurred())
        return 0;
    raw = Py_NewRef(raw ? raw : k_default); /* its __hash__ and __eq__ may run code that drops it from data */
    PyObject *found = PyDict_GetItemWithError(self->modes, raw);
    Py_DECREF(raw);
    if (found == NULL)
        return 0; /* unknown mode, or unhashable: the Python path names it */
    if (found == self->quote_or_depth) {
        int has_depth = PyDict_Contains(data, k_depth);
        if (has_depth != 0)
            return 0;
        *mode = MODE_QUOTE;
        return 1;
    }
    long value = PyLong_AsLong(found);
    if (value != MODE_LTP && value != MODE_QUOTE) {
        PyErr_Clear();
        return 0;
    }
    *mode = (int)value;
    return 1;
}

/* OpenAlgo's ``timestamp`` (ms since the epoch) in ns, exact for ints; 0 to decline floats and strings. */
static int exchange_ns(PyObject *data, int64_t *out) {
    PyObject *value;
    *out = 0;
    if (!lookup(data, k_timestamp, &value))
        return 0;
    if (value == NULL)
        return 1;
    if (!PyLong_CheckExact(value) || !as_int64(value, out) || *out < 0 || *out > INT64_MAX / NS_PER_MS)
        return 0;
    *out *= NS_PER_MS;
    return 1;
}

/* Copy a name-cache entry (ex_len, sym_len, ex, sym) into the body: 0 when it is not one. */
static int copy_names(PyObject *names, Body *body) {
    if (names == NULL || !PyTuple_CheckExact(names) || PyTuple_GET_SIZE(names) != 4)
        return 0;
    PyObject *ex = PyTuple_GET_ITEM(names, 2), *sym = PyTuple_GET_ITEM(names, 3);
    if (!PyBytes_CheckExact(ex) || !PyBytes_CheckExact(sym))
        return 0;
    Py_ssize_t ex_len = PyBytes_GET_SIZE(ex), sym_len = PyBytes_GET_SIZE(sym);
    if (ex_len > EXCHANGE_BYTES || sym_len > SYMBOL_BYTES)
        return 0;
    body->exchange_length = (uint8_t)ex_len;
    body->symbol_length = (uint8_t)sym_len;
    memcpy(body->exchange, PyBytes_AS_STRING(ex), ex_len);
    memcpy(body->symbol, PyBytes_AS_STRING(sym), sym_len);
    return 1;
}

/* The exchange and symbol as recorded, from the publisher's name cache: 0 when not cached yet. */
static int tick_names(TickWriter *self, PyObject *symbol, PyObject *data, Body *body) {
    PyObject *exchange;
    if (!lookup(data, k_exchange, &exchange))
        return 0;
    PyObject *key = PyTuple_Pack(2, exchange ? exchange : Py_None, symbol);
    if (key == NULL)
        return 0;
    PyObject *names = PyDict_GetItemWithError(self->names, key);
    Py_XINCREF(names); /* dropping the key may run code (a __del__) that changes the cache */
    Py_DECREF(key);
    int found = copy_names(names, body);
    Py_XDECREF(names);
    return found;
}

/* Everything but the publish time, as publisher.SharedMemoryPublisher._encode does it: 0 to decline. */
static int encode(TickWriter *self, PyObject *symbol, PyObject *data, Body *body) {
    PyObject *ltp;
    int mode;
    if (!PyDict_CheckExact(data) || !tick_names(self, symbol, data, body) || !tick_mode(self, data, &mode)
        || !exchange_ns(data, &body->exchange_ns))
        return 0;
    body->mode = (uint8_t)mode;
    if (!lookup(data, k_ltp, &ltp) || ltp == NULL || !as_double(ltp, &body->prices[LTP]))
        return 0; /* ``float(data["ltp"])``: no ``or 0.0``, so -0.0 stays -0.0 */
    for (int i = OPEN; i <= CHANGE; i++)
        if (!price_field(data, price_keys[i], &body->prices[i]))
            return 0;
    for (int i = 0; i < 7; i++)
        if (!isfinite(body->prices[i]))
            return 0; /* the Python path names the field */
    for (int i = VOLUME; i <= SELL_QUANTITY; i++)
        if (!quantity_field(data, quantity_keys[i], &body->quantities[i]))
            return 0;
    double *p = body->prices;
    if (p[CHANGE] == 0.0 && p[CLOSE] != 0.0)
        p[CHANGE] = (p[LTP] - p[CLOSE]) / p[CLOSE] * 100.0;
    return 1;
}

/* The writers' file lock, waiting with the GIL released only when another process holds it. */
static int lock_ring(int fd) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return 1;
    for (;;) {
        int result, error;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return 0;
        }
        if (errno == EINTR && PyErr_CheckSignals() < 0)
            return 0;
        Py_BEGIN_ALLOW_THREADS
        result = flock(fd, LOCK_EX);
        error = errno;
        Py_END_ALLOW_THREADS
        if (result == 0)
            return 1;
        errno = error;
    }
}

static inline uint64_t *slot_word(char *base, uint64_t capacity, uint64_t seq, size_t at) {
    return (uint64_t *)(base + HEADER_SIZE + (seq % capacity) * SLOT_SIZE + at);
}

/* Append ``body`` under the ring's seqlock protocol (the caller holds the flock); return its sequence. */
static uint64_t append(TickWriter *self, const Body *body) {
    char *base = self->view.buf;
    uint64_t *write_seq = (uint64_t *)(base + WRITE_SEQ_OFFSET);
    uint64_t seq = __atomic_load_n(write_seq, __ATOMIC_ACQUIRE) + 1;
    while (__atomic_load_n(slot_word(base, self->capacity, seq, SLOT_END_OFFSET), __ATOMIC_ACQUIRE) == seq) {
        /* A writer died after completing ``seq`` but before publishing write_seq: publish, don't reuse. */
        __atomic_store_n(write_seq, seq, __ATOMIC_RELEASE);
        seq++;
    }
    char *slot = (char *)slot_word(base, self->capacity, seq, 0);
    __atomic_store_n((uint64_t *)slot, seq, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE); /* BEGIN before the body, for readers re-checking it */
    memcpy(slot + BODY_OFFSET, body, sizeof(Body));
    memset(slot + BODY_OFFSET + sizeof(Body), 0, SLOT_END_OFFSET - BODY_OFFSET - sizeof(Body));
    __atomic_store_n((uint64_t *)(slot + SLOT_END_OFFSET), seq, __ATOMIC_RELEASE);
    __atomic_store_n(write_seq, seq, __ATOMIC_RELEASE);
    return seq;
}

/* Wake readers parked on write_seq (wakeup.py): a shared futex, keyed by the page, not the mapping. */
static void wake_readers(TickWriter *self) {
#ifdef __linux__
    syscall(SYS_futex, (char *)self->view.buf + WRITE_SEQ_OFFSET, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
#else
    (void)self;
#endif
}

/* The writer's bookkeeping after a record, as RingWriter._wrote does; -1 when the heartbeat raised. */
static int wrote(TickWriter *self, int64_t now) {
    self->records++;
    if (now - self->last_write > self->wake_gap)
        wake_readers(self); /* first record after a lull: readers may be parked */
    self->last_write = now;
    if (now - self->last_beat < self->beat_interval)
        return 0;
    self->last_beat = now;
    PyObject *stamp = PyLong_FromLongLong(now);
    PyObject *result = stamp ? PyObject_CallOneArg(self->beat, stamp) : NULL;
    Py_XDECREF(stamp);
    Py_XDECREF(result);
    return result ? 0 : -1;
}

/* The thread mutex without waiting: 1 taken, 0 busy (another thread is writing), -1 error. */
static int try_mutex(TickWriter *self) {
    PyObject *taken = PyObject_CallOneArg(self->acquire, Py_False);
    if (taken == NULL)
        return -1;
    int result = PyObject_IsTrue(taken);
    Py_DECREF(taken);
    return result;
}

/* Release the thread mutex, keeping any exception already raised (release() must not see it). */
static int unlock_mutex(TickWriter *self) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *result = PyObject_CallNoArgs(self->release);
    Py_XDECREF(result);
    if (type != NULL) {
        if (result == NULL)
            PyErr_Clear(); /* the first error is the one to report */
        PyErr_Restore(type, value, traceback);
    }
    return result ? 0 : -1;
}

PyDoc_STRVAR(publish_doc,
"publish(symbol, data) -> int\n\n"
"Encode an LTP or Quote tick and append it; return its sequence, or 0 when the tick needs the\n"
"Python path (unknown name, Depth, a value that is not a plain float or int, anything doubtful)\n"
"or another thread holds the writer's mutex (the Python path waits for it).");

static PyObject *TickWriter_publish(TickWriter *self, PyObject *const *args, Py_ssize_t nargs) {
    Body body;
    struct timespec now;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "publish(symbol, data) takes 2 arguments");
        return NULL;
    }
    if (self->view.buf == NULL) {
        PyErr_SetString(PyExc_ValueError, "TickWriter is closed");
        return NULL;
    }
    memset(&body, 0, sizeof body);
    if (!encode(self, args[0], args[1], &body)) {
        PyErr_Clear(); /* a declined tick: the Python path validates it and names what is wrong */
        return PyLong_FromLong(0);
    }
    int taken = try_mutex(self);
    if (taken <= 0)
        return taken < 0 ? NULL : PyLong_FromLong(0);
    if (self->view.buf == NULL) { /* closed while encode() ran Python code: RingWriter.close holds the mutex */
        unlock_mutex(self);
        PyErr_SetString(PyExc_ValueError, "TickWriter is closed");
        return NULL;
    }
    if (!lock_ring(self->fd)) {
        unlock_mutex(self);
        return NULL;
    }
    clock_gettime(CLOCK_REALTIME, &now);
    body.publish_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    uint64_t seq = append(self, &body);
    flock(self->fd, LOCK_UN);
    int failed = wrote(self, body.publish_ns);
    if (unlock_mutex(self) < 0 || failed)
        return NULL; /* the record is written; the error is the heartbeat's or the mutex's */
    return PyLong_FromUnsignedLongLong(seq);
}

/* Let go of the ring's mapping (idempotent): close() on either type. */
static void release_view(Py_buffer *view) {
    if (view->buf != NULL)
        PyBuffer_Release(view);
    view->buf = NULL;
}

static PyObject *TickWriter_close(TickWriter *self, PyObject *Py_UNUSED(ignored)) {
    release_view(&self->view);
    Py_RETURN_NONE;
}

static PyObject *TickWriter_get_records(TickWriter *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->records);
}

/* True when the mapping holds the header and ``capacity`` slots (no overflow for any capacity). */
static int holds(const Py_buffer *view, unsigned long long capacity) {
    return view->len >= HEADER_SIZE && capacity <= (unsigned long long)(view->len - HEADER_SIZE) / SLOT_SIZE;
}

/* ``layout``: (header size, write_seq offset, slot size, slot end offset, body size) from ring.py. */
static int check_layout(PyObject *layout, unsigned long long capacity) {
    PyObject *expected = Py_BuildValue("(iiiin)", HEADER_SIZE, WRITE_SEQ_OFFSET, SLOT_SIZE, SLOT_END_OFFSET,
                                       (Py_ssize_t)sizeof(Body));
    if (expected == NULL)
        return -1;
    int same = PyObject_RichCompareBool(expected, layout, Py_EQ);
    Py_DECREF(expected);
    if (same != 1) {
        if (same == 0)
            PyErr_SetString(PyExc_ValueError, "the compiled fast path was built for another ring layout");
        return -1;
    }
    if (capacity == 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must be positive");
        return -1;
    }
    return 0;
}

static int TickWriter_init(TickWriter *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"buf", "fd", "capacity", "layout", "names", "modes", "quote_or_depth", "mutex", "beat",
                             "beat_interval_ns", "wake_gap_ns", NULL};
    PyObject *buf, *layout, *names, *modes, *quote_or_depth, *mutex, *beat;
    int fd;
    unsigned long long capacity;
    long long beat_interval, wake_gap;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OiKOO!O!OOOLL:TickWriter", kwlist, &buf, &fd, &capacity,
                                     &layout, &PyDict_Type, &names, &PyDict_Type, &modes, &quote_or_depth, &mutex,
                                     &beat, &beat_interval, &wake_gap))
        return -1;
    if (check_layout(layout, capacity) < 0)
        return -1;
    PyObject *acquire = PyObject_GetAttrString(mutex, "acquire");
    PyObject *release = acquire ? PyObject_GetAttrString(mutex, "release") : NULL;
    if (release == NULL) {
        Py_XDECREF(acquire);
        return -1;
    }
    TickWriter_close(self, NULL);
    if (PyObject_GetBuffer(buf, &self->view, PyBUF_WRITABLE) < 0 || !holds(&self->view, capacity)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "buffer is smaller than the ring's capacity");
        TickWriter_close(self, NULL);
        Py_DECREF(acquire);
        Py_DECREF(release);
        return -1;
    }
    self->fd = fd;
    self->capacity = capacity;
    self->beat_interval = beat_interval;
    self->wake_gap = wake_gap;
    Py_XSETREF(self->acquire, acquire);
    Py_XSETREF(self->release, release);
    Py_XSETREF(self->names, Py_NewRef(names));
    Py_XSETREF(self->modes, Py_NewRef(modes));
    Py_XSETREF(self->quote_or_depth, Py_NewRef(quote_or_depth));
    Py_XSETREF(self->beat, Py_NewRef(beat));
    return 0;
}

static int TickWriter_traverse(TickWriter *self, visitproc visit, void *arg) {
    Py_VISIT(self->names);
    Py_VISIT(self->modes);
    Py_VISIT(self->quote_or_depth);
    Py_VISIT(self->acquire);
    Py_VISIT(self->release);
    Py_VISIT(self->beat);
    return 0;
}

static int TickWriter_clear(TickWriter *self) {
    TickWriter_close(self, NULL);
    Py_CLEAR(self->names);
    Py_CLEAR(self->modes);
    Py_CLEAR(self->quote_or_depth);
    Py_CLEAR(self->acquire);
    Py_CLEAR(self->release);
    Py_CLEAR(self->beat);
    return 0;
}

static void TickWriter_dealloc(TickWriter *self) {
    PyObject_GC_UnTrack(self);
    TickWriter_close(self, NULL);
    TickWriter_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef TickWriter_methods[] = {
    {"publish", (PyCFunction)(void (*)(void))TickWriter_publish, METH_FASTCALL, publish_doc},
    {"close", (PyCFunction)TickWriter_close, METH_NOARGS, "Release the ring's buffer (idempotent)."},
    {NULL},
};

static PyGetSetDef TickWriter_getset[] = {
    {"records", (getter)TickWriter_get_records, NULL, "Records this path has written.", NULL},
    {NULL},
};

static PyTypeObject TickWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmproxy.core._speedups.TickWriter",
    .tp_doc = PyDoc_STR("The compiled publish path of a RingWriter; built by RingWriter.compiled_path()."),
    .tp_basicsize = sizeof(TickWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TickWriter_init,
    .tp_dealloc = (destructor)TickWriter_dealloc,
    .tp_traverse = (traverseproc)TickWriter_traverse,
    .tp_clear = (inquiry)TickWriter_clear,
    .tp_methods = TickWriter_methods,
    .tp_getset = TickWriter_getset,
};

/* ---- TickReader ------------------------------------------------------------------------------ */

#define DEPTH_VALUES 30
#define TICK_FIELDS 20 /* Tick.__slots__, in this order (checked by name at construction) */
#define NAMES_AT 17    /* body offset of the name lengths, pad and names: the name cache's key */
#define NAMES_END 80
#define NAME_CACHE_LIMIT 100000

static const char *const tick_fields[TICK_FIELDS] = {
    "seq", "publish_ns", "exchange_ns", "mode", "exchange", "symbol",
    "ltp", "open", "high", "low", "close", "average_price", "percent_change",
    "volume", "last_quantity", "last_trade_time", "oi", "total_buy_quantity", "total_sell_quantity", "_depth",
};
enum { F_SEQ, F_PUBLISH, F_EXCHANGE_NS, F_MODE, F_EXCHANGE, F_SYMBOL, F_PRICES, F_QUANTITIES = F_PRICES + 7,
       F_DEPTH = F_QUANTITIES + 6 };

typedef struct {
    uint64_t begin;
    Body body;
    struct { double price; int64_t quantity, orders; } depth[10];
    char pad[SLOT_END_OFFSET - 8 - sizeof(Body) - 240];
    uint64_t end;
} Slot;

_Static_assert(sizeof(Slot) == SLOT_SIZE, "Slot must match layout.SLOT_READ");

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    uint64_t capacity;
    PyTypeObject *tick_type;
    Py_ssize_t offsets[TICK_FIELDS]; /* where each Tick slot lives in a Tick object */
    PyObject *names;                 /* raw name bytes -> (exchange, symbol) */
} TickReader;

/* (exchange, symbol) for a record, decoded once per distinct raw name bytes, as NameDecoder does.
 * A new reference: making the Tick may run a GC pass whose callbacks change the cache. */
static PyObject *record_names(TickReader *self, const Body *body) {
    PyObject *key = PyBytes_FromStringAndSize((const char *)body + NAMES_AT, NAMES_END - NAMES_AT);
    if (key == NULL)
        return NULL;
    PyObject *names = PyDict_GetItemWithError(self->names, key);
    if (names != NULL || PyErr_Occurred()) {
        Py_XINCREF(names);
        Py_DECREF(key);
        return names;
    }
    if (PyDict_GET_SIZE(self->names) >= NAME_CACHE_LIMIT)
        PyDict_Clear(self->names);
    size_t ex_len = body->exchange_length < EXCHANGE_BYTES ? body->exchange_length : EXCHANGE_BYTES;
    size_t sym_len = body->symbol_length < SYMBOL_BYTES ? body->symbol_length : SYMBOL_BYTES;
    PyObject *exchange = PyUnicode_DecodeUTF8(body->exchange, ex_len, "replace");
    PyObject *symbol = exchange ? PyUnicode_DecodeUTF8(body->symbol, sym_len, "replace") : NULL;
    names = symbol ? PyTuple_Pack(2, exchange, symbol) : NULL;
    Py_XDECREF(exchange);
    Py_XDECREF(symbol);
    if (names == NULL || PyDict_SetItem(self->names, key, names) < 0) {
        Py_XDECREF(names);
        Py_DECREF(key);
        return NULL;
    }
    Py_DECREF(key);
    return names;
}

static PyObject *depth_tuple(const Slot *slot) {
    PyObject *depth = PyTuple_New(DEPTH_VALUES);
    if (depth == NULL)
        return NULL;
    for (int i = 0; i < 10; i++) {
        PyObject *price = PyFloat_FromDouble(slot->depth[i].price);
        PyObject *quantity = PyLong_FromLongLong(slot->depth[i].quantity);
        PyObject *orders = PyLong_FromLongLong(slot->depth[i].orders);
        PyTuple_SET_ITEM(depth, 3 * i, price);
        PyTuple_SET_ITEM(depth, 3 * i + 1, quantity);
        PyTuple_SET_ITEM(depth, 3 * i + 2, orders);
        if (price == NULL || quantity == NULL || orders == NULL) {
            Py_DECREF(depth); /* a NULL item is fine for the tuple's dealloc */
            return NULL;
        }
    }
    return depth;
}

/* A Tick for a complete slot, as Tick.from_slot builds it. */
static PyObject *make_tick(TickReader *self, const Slot *slot) {
    const Body *b = &slot->body;
    PyObject *names = record_names(self, b);
    if (names == NULL)
        return NULL;
    PyObject *tick = self->tick_type->tp_alloc(self->tick_type, 0);
    if (tick == NULL) {
        Py_DECREF(names);
        return NULL;
    }
    PyObject *values[TICK_FIELDS];
    values[F_SEQ] = PyLong_FromUnsignedLongLong(slot->begin);
    values[F_PUBLISH] = PyLong_FromLongLong(b->publish_ns);
    values[F_EXCHANGE_NS] = PyLong_FromLongLong(b->exchange_ns);
    values[F_MODE] = PyLong_FromLong(b->mode);
    values[F_EXCHANGE] = Py_NewRef(PyTuple_GET_ITEM(names, 0));
    values[F_SYMBOL] = Py_NewRef(PyTuple_GET_ITEM(names, 1));
    Py_DECREF(names);
    for (int i = 0; i < 7; i++)
        values[F_PRICES + i] = PyFloat_FromDouble(b->prices[i]);
    for (int i = 0; i < 6; i++)
        values[F_QUANTITIES + i] = PyLong_FromLongLong(b->quantities[i]);
    values[F_DEPTH] = b->mode == 3 ? depth_tuple(slot) : Py_NewRef(Py_None);
    int failed = 0;
    for (int i = 0; i < TICK_FIELDS; i++) {
        failed |= values[i] == NULL;
        *(PyObject **)((char *)tick + self->offsets[i]) = values[i]; /* the Tick owns them now */
    }
    if (failed) {
        Py_DECREF(tick);
        return NULL;
    }
    return tick;
}

PyDoc_STRVAR(read_doc,
"read(cursor, limit) -> (ticks, consumed)\n\n"
"Ticks for the complete records from ``cursor`` on, at most ``limit`` records, stopping at the first\n"
"slot not written yet or lapped. ``consumed`` counts the records read, including those skipped for a\n"
"mode byte other than 1, 2 or 3 (``consumed - len(ticks)`` of them).");

static PyObject *TickReader_read(TickReader *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned long long cursor;
    Py_ssize_t limit;
    Slot slot;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "read(cursor, limit) takes 2 arguments");
        return NULL;
    }
    cursor = PyLong_AsUnsignedLongLong(args[0]);
    if (cursor == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    limit = PyLong_AsSsize_t(args[1]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    if (self->view.buf == NULL) {
        PyErr_SetString(PyExc_ValueError, "TickReader is closed");
        return NULL;
    }
    PyObject *ticks = PyList_New(0);
    if (ticks == NULL)
        return NULL;
    Py_ssize_t consumed = 0;
    for (; consumed < limit; consumed++, cursor++) {
        const char *base = self->view.buf; /* NULL once closed, which making a Tick (a GC pass) may do */
        if (base == NULL)
            break;
        const char *at = base + HEADER_SIZE + (cursor % self->capacity) * SLOT_SIZE;
        if (__atomic_load_n((const uint64_t *)(at + SLOT_END_OFFSET), __ATOMIC_ACQUIRE) != cursor)
            break; /* not written yet, or lapped: RingReader decides */
        memcpy(&slot, at, sizeof slot);
        __atomic_thread_fence(__ATOMIC_ACQUIRE); /* the copy before the re-check of BEGIN */
        if (slot.begin != cursor || slot.end != cursor || __atomic_load_n((const uint64_t *)at, __ATOMIC_RELAXED) != cursor)
            break; /* a writer lapped this slot while it was copied */
        if (slot.body.mode < 1 || slot.body.mode > 3)
            continue; /* a foreign writer's record: counted by the caller, never delivered */
        PyObject *tick = make_tick(self, &slot);
        if (tick == NULL || PyList_Append(ticks, tick) < 0) {
            Py_XDECREF(tick);
            Py_DECREF(ticks);
            return NULL;
        }
        Py_DECREF(tick);
    }
    PyObject *result = Py_BuildValue("(Nn)", ticks, consumed);
    return result;
}

static PyObject *TickReader_close(TickReader *self, PyObject *Py_UNUSED(ignored)) {
    release_view(&self->view);
    Py_RETURN_NONE;
}

/* Where Tick keeps each field: the offsets of its __slots__ member descriptors. */
static int tick_offsets(TickReader *self, PyTypeObject *tick_type) {
    for (int i = 0; i < TICK_FIELDS; i++) {
        PyObject *descr = PyObject_GetAttrString((PyObject *)tick_type, tick_fields[i]);
        int usable = descr != NULL && PyType_HasFeature(tick_type, Py_TPFLAGS_HEAPTYPE)
            && Py_IS_TYPE(descr, &PyMemberDescr_Type) && ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX
            && ((PyDescrObject *)descr)->d_type == tick_type;
        if (usable)
            self->offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_XDECREF(descr);
        if (!usable) {
            PyErr_Format(PyExc_ValueError, "Tick has no object slot %s: the compiled reader does not match it",
                         tick_fields[i]);
            return -1;
        }
    }
    return 0;
}

static int TickReader_init(TickReader *self, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"buf", "capacity", "layout", "tick_type", NULL};
    PyObject *buf, *layout;
    PyTypeObject *tick_type;
    unsigned long long capacity;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "$OKOO!:TickReader", kwlist, &buf, &capacity, &layout,
                                     &PyType_Type, &tick_type))
        return -1;
    if (check_layout(layout, capacity) < 0 || tick_offsets(self, tick_type) < 0)
        return -1;
    PyObject *names = PyDict_New();
    if (names == NULL)
        return -1;
    TickReader_close(self, NULL);
    if (PyObject_GetBuffer(buf, &self->view, PyBUF_SIMPLE) < 0 || !holds(&self->view, capacity)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "buffer is smaller than the ring's capacity");
        TickReader_close(self, NULL);
        Py_DECREF(names);
        return -1;
    }
    self->capacity = capacity;
    Py_XSETREF(self->names, names);
    Py_XSETREF(self->tick_type, (PyTypeObject *)Py_NewRef(tick_type));
    return 0;
}

static int TickReader_traverse(TickReader *self, visitproc visit, void *arg) {
    Py_VISIT(self->names);
    Py_VISIT(self->tick_type);
    return 0;
}

static int TickReader_clear(TickReader *self) {
    TickReader_close(self, NULL);
    Py_CLEAR(self->names);
    Py_CLEAR(self->tick_type);
    return 0;
}

static void TickReader_dealloc(TickReader *self) {
    PyObject_GC_UnTrack(self);
    TickReader_close(self, NULL);
    TickReader_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef TickReader_methods[] = {
    {"read", (PyCFunction)(void (*)(void))TickReader_read, METH_FASTCALL, read_doc},
    {"close", (PyCFunction)TickReader_close, METH_NOARGS, "Release the ring's buffer (idempotent)."},
    {NULL},
};

static PyTypeObject TickReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmproxy.core._speedups.TickReader",
    .tp_doc = PyDoc_STR("The compiled read path of a SharedMemorySubscriber."),
    .tp_basicsize = sizeof(TickReader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TickReader_init,
    .tp_dealloc = (destructor)TickReader_dealloc,
    .tp_traverse = (traverseproc)TickReader_traverse,
    .tp_clear = (inquiry)TickReader_clear,
    .tp_methods = TickReader_methods,
};

static int intern_keys(void) {
    static const char *prices[7][2] = {
        {"ltp", NULL}, {"open", NULL}, {"high", NULL}, {"low", NULL}, {"close", NULL},
        {"average_price", "avg_trade_price"}, {"percent_change", "change_percent"},
    };
    static const char *quantities[6][2] = {
        {"volume", NULL}, {"last_quantity", "last_trade_quantity"}, {"last_trade_time", "ltt"}, {"oi", NULL},
        {"total_buy_quantity", NULL}, {"total_sell_quantity", NULL},
    };
    for (int i = 0; i < 7; i++)
        for (int j = 0; j < 2; j++)
            if (prices[i][j] && !(price_keys[i][j] = PyUnicode_InternFromString(prices[i][j])))
                return -1;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 2; j++)
            if (quantities[i][j] && !(quantity_keys[i][j] = PyUnicode_InternFromString(quantities[i][j])))
                return -1;
    k_ltp = price_keys[LTP][0];
    return (k_exchange = PyUnicode_InternFromString("exchange")) && (k_mode = PyUnicode_InternFromString("mode"))
        && (k_default = PyUnicode_InternFromString("default")) && (k_depth = PyUnicode_InternFromString("depth"))
        && (k_timestamp = PyUnicode_InternFromString("timestamp")) ? 0 : -1;
}

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "Compiled fast paths of the ring's writer and reader (optional; the Python paths are the reference).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

static int add_type(PyObject *module, PyTypeObject *type, const char *name) {
    if (PyType_Ready(type) < 0)
        return -1;
    Py_INCREF(type);
    if (PyModule_AddObject(module, name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__speedups(void) {
    if (intern_keys() < 0)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (add_type(module, &TickWriterType, "TickWriter") < 0 || add_type(module, &TickReaderType, "TickReader") < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
