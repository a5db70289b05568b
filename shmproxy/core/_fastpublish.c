/* The compiled publish path: encode an LTP or Quote tick dict and append it to the ring in one call.
 *
 * A speed-up, not a second protocol. shmproxy/core/publisher.py and ring.py are the reference; this
 * file does what their fast path does for the common case (an exact dict, a known symbol, LTP or Quote,
 * plain float/int values) and declines everything else by returning 0, so that the Python code, which
 * validates and names bad fields, handles it. tests/test_fastpublish.py checks both paths write the
 * same bytes for the same input.
 *
 * Ring protocol (docs/shm-format.md): under the ring writer's thread mutex and the writers' file lock,
 * take write_seq + 1, skip sequences an earlier writer completed but did not publish, store the slot's
 * BEGIN marker, then body, zeroed depth and END marker, then publish write_seq. Then, as RingWriter
 * does: wake parked readers after a lull, and heartbeat (through RingWriter) every interval.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
    PyObject *found = PyDict_GetItemWithError(self->modes, raw ? raw : k_default);
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

/* The exchange and symbol as recorded, from the publisher's name cache: 0 when not cached yet. */
static int tick_names(TickWriter *self, PyObject *symbol, PyObject *data, Body *body) {
    PyObject *exchange = PyDict_GetItemWithError(data, k_exchange);
    if (exchange == NULL && PyErr_Occurred())
        return 0;
    PyObject *key = PyTuple_Pack(2, exchange ? exchange : Py_None, symbol);
    if (key == NULL)
        return 0;
    PyObject *names = PyDict_GetItemWithError(self->names, key);
    Py_DECREF(key);
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

static int unlock_mutex(TickWriter *self) {
    PyObject *result = PyObject_CallNoArgs(self->release);
    Py_XDECREF(result);
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
        return NULL;
    return PyLong_FromUnsignedLongLong(seq);
}

static PyObject *TickWriter_close(TickWriter *self, PyObject *Py_UNUSED(ignored)) {
    if (self->view.buf != NULL)
        PyBuffer_Release(&self->view);
    self->view.buf = NULL;
    Py_RETURN_NONE;
}

static PyObject *TickWriter_get_records(TickWriter *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLongLong(self->records);
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
    /* layout: (header size, write_seq offset, slot size, slot end offset, body size) from layout.py */
    PyObject *expected = Py_BuildValue("(iiiin)", HEADER_SIZE, WRITE_SEQ_OFFSET, SLOT_SIZE, SLOT_END_OFFSET,
                                       (Py_ssize_t)sizeof(Body));
    if (expected == NULL)
        return -1;
    int same = PyObject_RichCompareBool(expected, layout, Py_EQ);
    Py_DECREF(expected);
    if (same != 1) {
        if (same == 0)
            PyErr_SetString(PyExc_ValueError, "the compiled publish path was built for another ring layout");
        return -1;
    }
    if (capacity == 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must be positive");
        return -1;
    }
    PyObject *acquire = PyObject_GetAttrString(mutex, "acquire");
    PyObject *release = acquire ? PyObject_GetAttrString(mutex, "release") : NULL;
    if (release == NULL) {
        Py_XDECREF(acquire);
        return -1;
    }
    TickWriter_close(self, NULL);
    if (PyObject_GetBuffer(buf, &self->view, PyBUF_WRITABLE) < 0 || (uint64_t)self->view.len < HEADER_SIZE + capacity * SLOT_SIZE) {
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
    .tp_name = "shmproxy.core._fastpublish.TickWriter",
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

static struct PyModuleDef fastpublish_module = {
    PyModuleDef_HEAD_INIT, "_fastpublish",
    "The compiled publish path of SharedMemoryPublisher (optional; the Python path is the reference).", -1,
    NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpublish(void) {
    if (intern_keys() < 0 || PyType_Ready(&TickWriterType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&fastpublish_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&TickWriterType);
    if (PyModule_AddObject(module, "TickWriter", (PyObject *)&TickWriterType) < 0) {
        Py_DECREF(&TickWriterType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
