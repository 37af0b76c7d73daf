# -*- coding: utf-8 -*-
# Copyright: Contributors to the Ferry project
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A temporary, read-only HTTP server for a bundle directory (docs/distribution.md).

The deploy node runs it while the target hosts pull their files, then stops it.
It serves GET and HEAD (with single byte ranges: 206, Content-Range) of exactly
the files the bundle's ``manifest.json`` lists, plus ``manifest.json`` itself;
anything else, any path with a ``..``/empty component and any path without the
token prefix is a 404. Other methods get 501 from http.server. It exits by itself
after ``idle_timeout`` seconds without an authenticated request (one with the
token), so a crashed play never leaves it running for long, and after
``max_lifetime`` seconds whatever happens.

Hardened against the site network: at most ``max_connections`` connections are
served at once (more are answered 503 and closed at once, so a client cannot
exhaust the daemon's file descriptors); a connection must send its request line
and headers within ``HEADER_TIMEOUT`` seconds in all (a watcher closes slower
ones) and only a request with the token gets the longer transfer timeout.

Runs as a detached daemon (double fork, setsid, stdio on /dev/null). The socket
is bound *before* forking, so a port in use is reported to the caller, not lost
in the daemon. Its state (pid, process start time, path, address, port, token)
is kept in ``<run_dir>/ferry-serve-<port>.json`` (mode 0600: it holds the token)
next to a plain pidfile ``ferry-serve-<port>.pid``. ``run_dir`` must not be
writable by group or others; state files are written under a fresh random name
with O_EXCL|O_NOFOLLOW and renamed into place, and a state file that is not a
regular file owned by the caller is ignored (never a reason to signal a pid).

Standard library only, Python 3.6: socketserver.ThreadingMixIn + http.server
(no ThreadingHTTPServer, no SimpleHTTPRequestHandler(directory=)).
"""

import binascii
import errno
import hmac
import http.server
import json
import os
import re
import signal
import socket
import socketserver
import stat
import threading
import time
from urllib.parse import unquote, urlsplit

from ansible_collections.ferry.airgap.plugins.module_utils._bundle.common import MANIFEST, BundleError, check_relpath
from ansible_collections.ferry.airgap.plugins.module_utils._bundle.manifest import read_manifest

DEFAULT_PORT = 8765
DEFAULT_IDLE_TIMEOUT = 600
DEFAULT_MAX_LIFETIME = 21600
DEFAULT_MAX_CONNECTIONS = 128
HEADER_TIMEOUT = 10.0    # seconds a connection has for its request line and headers, in all
TRANSFER_TIMEOUT = 120   # an authenticated client that stalls this long is dropped
STOP_WAIT = 10.0
_RANGE_RE = re.compile(r'^bytes=(\d*)-(\d*)$')
_MAX_DIGITS = 18         # a byte position longer than this is beyond any file (and int() of 4300 digits raises)
_BUSY = b'HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'


class ServeError(Exception):
    """An operator-facing error starting or stopping the server."""


# ---------------------------------------------------------------- the HTTP side

def allowed_files(root):
    """Set of the relative paths the server may hand out: manifest.json and every file it lists."""
    manifest, dummy = read_manifest(root)
    return set(manifest['files']) | set([MANIFEST])


def parse_range(header, size):
    """(start, end inclusive) of a single-range ``Range`` header, None to send it all, 'unsatisfiable'."""
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None  # malformed or multiple ranges: RFC 7233 lets us ignore the header
    first, last = match.group(1).lstrip('0') or '0', match.group(2).lstrip('0') or '0'
    if len(first) > _MAX_DIGITS or len(last) > _MAX_DIGITS:
        return 'unsatisfiable'  # a position past any file; never handed to int()
    if not match.group(1):  # suffix: the last N bytes
        count = int(last)
        if count == 0 or size == 0:
            return 'unsatisfiable'
        return max(0, size - count), size - 1
    start = int(first)
    end = int(last) if match.group(2) else size - 1
    if start >= size:
        return 'unsatisfiable'
    if end < start:
        return None
    return start, min(end, size - 1)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = 'ferry-serve'
    sys_version = ''
    timeout = HEADER_TIMEOUT  # until the token is seen (then TRANSFER_TIMEOUT)

    def do_GET(self):
        self._serve(True)

    def do_HEAD(self):
        self._serve(False)

    def log_message(self, *args):
        pass

    def _serve(self, body):
        rel = self.server.authenticate(self.path)
        if rel is None:  # no token: not activity, no longer timeout
            self.close_connection = True
            return self.send_error(404, 'Not Found')
        self.server.begin(self.connection)
        try:
            self._respond(rel, body)
        except (socket.error, socket.timeout):
            self.close_connection = True
        finally:
            self.server.end()

    def _respond(self, rel, body):
        full = self.server.lookup(rel)
        if full is None:
            return self.send_error(404, 'Not Found')
        try:
            handle = open(full, 'rb')
        except (IOError, OSError):
            return self.send_error(404, 'Not Found')
        with handle:
            size = os.fstat(handle.fileno()).st_size
            wanted = self.byte_range(size)
            if wanted == 'unsatisfiable':
                self.send_response(416)
                self.send_header('Content-Range', 'bytes */%d' % size)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            if wanted is None:
                start, count = 0, size
                self.send_response(200)
            else:
                start, count = wanted[0], wanted[1] - wanted[0] + 1
                self.send_response(206)
                self.send_header('Content-Range', 'bytes %d-%d/%d' % (wanted[0], wanted[1], size))
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Length', str(count))
            self.send_header('Accept-Ranges', 'bytes')
            self.end_headers()
            if body and count:
                self.wfile.flush()
                self.send_body(handle, start, count)

    def byte_range(self, size):
        return parse_range(self.headers.get('Range'), size)

    def send_body(self, handle, start, count):
        self.server.count(self.connection.sendfile(handle, start, count))


class BundleServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Threaded HTTP server of one bundle directory; ``serve_forever`` stops after ``idle_timeout``."""

    daemon_threads = True
    allow_reuse_address = True
    handler_class = _Handler
    request_queue_size = 64

    def __init__(self, root, address='0.0.0.0', port=DEFAULT_PORT, token=None, idle_timeout=DEFAULT_IDLE_TIMEOUT,
                 max_lifetime=DEFAULT_MAX_LIFETIME, max_connections=DEFAULT_MAX_CONNECTIONS):
        self.root = os.path.realpath(root)
        self.files = allowed_files(self.root)
        self.token = token or ''
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.max_connections = max_connections
        self.header_timeout = HEADER_TIMEOUT
        self.bytes_sent = 0
        self.requests = 0
        self.refused = 0
        self.started = time.time()
        self._active = 0
        self._last = time.time()
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._pending = {}  # connection -> accepted at, until its request is authenticated
        if ':' in address:
            self.address_family = socket.AF_INET6
        try:
            http.server.HTTPServer.__init__(self, (address, port), self.handler_class)
        except (socket.error, OverflowError) as exc:
            err = getattr(exc, 'errno', None)
            if err == errno.EADDRINUSE:
                raise ServeError('port %d on %s is already in use by another process: stop it or choose another port' % (
                    port, address))
            if err == errno.EADDRNOTAVAIL:
                raise ServeError('cannot listen on %s port %s: %s is not an address of this host' % (address, port, address))
            raise ServeError('cannot listen on %s port %s: %s' % (address, port, getattr(exc, 'strerror', None) or exc))

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (socket.getfqdn), which can hang on a site without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    # -- connections: a bounded number, each with a deadline for its headers until authenticated
    def process_request(self, request, client_address):
        if not self._slots.acquire(False):
            with self._lock:
                self.refused += 1
            try:
                request.setblocking(False)
                request.send(_BUSY)
            except (socket.error, socket.timeout):
                pass
            self.shutdown_request(request)
            return
        with self._lock:
            self._pending[request] = time.time()
        try:
            socketserver.ThreadingMixIn.process_request(self, request, client_address)
        except BaseException:
            self._release(request)
            self.shutdown_request(request)
            raise

    def process_request_thread(self, request, client_address):
        try:
            socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            self._release(request)

    def _release(self, request):
        with self._lock:
            self._pending.pop(request, None)
        self._slots.release()

    def drop_slow(self, now=None):
        """Shut down connections that have not sent an authenticated request within header_timeout."""
        now = time.time() if now is None else now
        with self._lock:
            late = [conn for conn, since in self._pending.items() if now - since > self.header_timeout]
            for conn in late:
                del self._pending[conn]
        for conn in late:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except (socket.error, OSError):
                pass
        return len(late)

    # -- activity, for the idle timeout: authenticated requests only
    def begin(self, connection=None):
        with self._lock:
            self._active += 1
            self.requests += 1
            self._last = time.time()
            self._pending.pop(connection, None)
        if connection is not None:
            connection.settimeout(TRANSFER_TIMEOUT)

    def end(self):
        with self._lock:
            self._active -= 1
            self._last = time.time()

    def count(self, sent):
        with self._lock:
            self.bytes_sent += sent or 0

    def idle_for(self):
        with self._lock:
            return 0.0 if self._active else time.time() - self._last

    def expired(self, now=None):
        """True once the server has run max_lifetime seconds, busy or not."""
        return (time.time() if now is None else now) - self.started >= self.max_lifetime

    # -- which file a request path names
    def authenticate(self, raw_path):
        """The bundle-relative path of a request path that carries the token (any path without one), else None."""
        path = unquote(urlsplit(raw_path).path)
        if not path.startswith('/'):
            return None
        if not self.token:
            return path[1:]
        head, sep, rel = path[1:].partition('/')
        if not sep or not hmac.compare_digest(head.encode('utf-8'), self.token.encode('utf-8')):
            return None
        return rel

    def resolve(self, raw_path):
        """Absolute path of the bundle file the request path names, or None."""
        rel = self.authenticate(raw_path)
        return None if rel is None else self.lookup(rel)

    def lookup(self, rel):
        """Absolute path of the listed bundle file ``rel``, or None."""
        if check_relpath(rel) or rel not in self.files:
            return None
        full = os.path.realpath(os.path.join(self.root, rel))
        if not full.startswith(self.root + os.sep) or not os.path.isfile(full):
            return None
        return full

    def serve_until_idle(self, poll=0.5):
        """serve_forever, ended by a watcher thread after idle_timeout seconds without an authenticated request
        or after max_lifetime seconds; the watcher also drops connections slower than header_timeout."""
        stop = threading.Event()

        def watch():
            while not stop.wait(min(1.0, max(0.05, min(self.idle_timeout, self.header_timeout) / 4.0))):
                self.drop_slow()
                if self.idle_for() >= self.idle_timeout or self.expired():
                    self.shutdown()
                    return

        watcher = threading.Thread(target=watch)
        watcher.daemon = True
        watcher.start()
        try:
            self.serve_forever(poll_interval=poll)
        finally:
            stop.set()


# ---------------------------------------------------------------- state files

def state_paths(run_dir, port):
    base = os.path.join(run_dir, 'ferry-serve-%d' % port)
    return base + '.json', base + '.pid'


def proc_start_time(pid):
    """Start time of ``pid`` (clock ticks since boot, /proc/<pid>/stat field 22); None when gone or a zombie."""
    try:
        with open('/proc/%d/stat' % pid, 'rb') as fh:
            stat = fh.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return None
    fields = stat.rsplit(')', 1)[-1].split()
    if len(fields) < 20 or fields[0] in ('Z', 'X'):
        return None
    return fields[19]


def check_run_dir(run_dir):
    """ServeError unless ``run_dir`` is a directory owned by root or the caller that group and others cannot write."""
    try:
        st = os.stat(run_dir)
    except OSError as exc:
        raise ServeError('run_dir %s does not exist' % run_dir if exc.errno == errno.ENOENT
                         else 'cannot use run_dir %s: %s' % (run_dir, exc.strerror or exc))
    if not stat.S_ISDIR(st.st_mode):
        raise ServeError('run_dir %s is not a directory' % run_dir)
    if st.st_uid not in (0, os.geteuid()):
        raise ServeError('run_dir %s belongs to uid %d, expected root or uid %d (the caller): another user could plant '
                         'the state files there' % (run_dir, st.st_uid, os.geteuid()))
    if st.st_mode & 0o022:
        raise ServeError('run_dir %s has mode %04o, expected no write permission for group and others (like 0755): '
                         'anyone who can write there could plant the state files' % (run_dir, stat.S_IMODE(st.st_mode)))


def _read_own(path):
    """Bytes of ``path`` if it is a regular file (not a link) owned by the caller and writable by no one else, else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, 'O_NONBLOCK', 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022 or st.st_size > 65536:
            return None
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b''.join(chunks)
    finally:
        os.close(fd)


def read_state(run_dir, port):
    """The state recorded for ``port`` (dict) or None (also when the file is not the caller's own)."""
    data = _read_own(state_paths(run_dir, port)[0])
    if data is None:
        return None
    try:
        state = json.loads(data.decode('utf-8'))
    except ValueError:
        return None
    return state if isinstance(state, dict) and isinstance(state.get('pid'), int) else None


def is_running(state):
    """True when the process of ``state`` is alive and is the one that wrote it (not a reused pid)."""
    if not state:
        return False
    try:
        os.kill(state['pid'], 0)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            return False
    return proc_start_time(state['pid']) == state.get('start_time')


def _write_new(path, data, mode):
    """Write ``path`` through a fresh temporary (random name, O_EXCL|O_NOFOLLOW, ``mode``) renamed into place."""
    tmp = '%s.tmp-%d-%s' % (path, os.getpid(), binascii.hexlify(os.urandom(6)).decode('ascii'))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_state(run_dir, port, state):
    state_file, pid_file = state_paths(run_dir, port)
    _write_new(state_file, (json.dumps(state, sort_keys=True) + '\n').encode('utf-8'), 0o600)
    _write_new(pid_file, ('%d\n' % state['pid']).encode('ascii'), 0o644)


def remove_state(run_dir, port, pid=None):
    """Remove the state files of ``port`` (only when they name ``pid``, if given)."""
    state_file, pid_file = state_paths(run_dir, port)
    if pid is not None:
        state = read_state(run_dir, port)
        if state is not None and state['pid'] != pid:
            return
    for path in (state_file, pid_file):
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise


# ---------------------------------------------------------------- start / stop

def _set_process_name(name):
    """Best effort: show ``name`` as the command in ps/top (Linux prctl PR_SET_NAME)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.prctl(15, ctypes.c_char_p(name.encode('ascii')), 0, 0, 0)
    except Exception:  # pylint: disable=broad-except
        pass


def _run_daemon(server, run_dir, state, ready_fd):
    """In the detached grandchild: record the state, tell the parent our pid, serve until idle or SIGTERM."""
    _set_process_name('ferry-serve')
    pid = os.getpid()
    state = dict(state, pid=pid, start_time=proc_start_time(pid))

    def on_term(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        write_state(run_dir, server.server_address[1], state)
        os.write(ready_fd, str(pid).encode('ascii'))
        os.close(ready_fd)
        server.serve_until_idle()
    finally:
        server.server_close()
        remove_state(run_dir, state['port'], pid)


def _detach_stdio(keep):
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        max_fd = os.sysconf('SC_OPEN_MAX')
    except (AttributeError, ValueError):
        max_fd = 1024
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, min(max_fd, 65536))


def start(root, run_dir, address='0.0.0.0', port=DEFAULT_PORT, token=None, idle_timeout=DEFAULT_IDLE_TIMEOUT,
          max_lifetime=DEFAULT_MAX_LIFETIME, max_connections=DEFAULT_MAX_CONNECTIONS):
    """Start the daemon; returns its state dict. ServeError when the port is taken or the bundle unreadable."""
    check_run_dir(run_dir)
    if not os.access(run_dir, os.W_OK):
        raise ServeError('run_dir %s is not writable (run as root, or set run_dir)' % run_dir)
    try:
        server = BundleServer(root, address, port, token, idle_timeout, max_lifetime, max_connections)
    except BundleError as exc:
        raise ServeError('cannot serve %s: %s' % (root, exc))
    state = {'path': os.path.abspath(root), 'address': address, 'port': server.server_address[1], 'token': token or '',
             'idle_timeout': idle_timeout, 'max_lifetime': max_lifetime, 'max_connections': max_connections,
             'started': server.started}
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked children, which never return
        code = 0
        try:
            os.close(read_fd)
            os.setsid()
            if os.fork() == 0:
                os.chdir('/')
                os.umask(0o022)
                _detach_stdio([server.fileno(), write_fd])
                _run_daemon(server, run_dir, state, write_fd)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    server.socket.close()
    os.waitpid(child, 0)
    chunks = []
    while True:
        data = os.read(read_fd, 64)
        if not data:
            break
        chunks.append(data)
    os.close(read_fd)
    text = b''.join(chunks).decode('ascii', 'replace').strip()
    if not text.isdigit():
        raise ServeError('the bundle server on %s port %d did not start' % (address, port))
    state = read_state(run_dir, state['port'])
    if not state or state['pid'] != int(text):
        raise ServeError('the bundle server (pid %s) did not record its state in %s' % (text, run_dir))
    return state


def stop(state, run_dir, wait=STOP_WAIT):
    """Terminate the server of ``state`` (SIGTERM, then SIGKILL after ``wait`` s); True when it was running."""
    if not is_running(state):
        remove_state(run_dir, state['port'])
        return False
    pid = state['pid']
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + wait
    while is_running(state):
        if time.time() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.time() + wait
            while is_running(state) and time.time() < deadline:
                time.sleep(0.05)
            break
        time.sleep(0.05)
    if is_running(state):
        raise ServeError('the bundle server (pid %d) did not stop' % pid)
    remove_state(run_dir, state['port'])
    return True


def url_of(state, host=None, with_token=True):
    """http://HOST:PORT[/TOKEN] of a state (HOST default: its bind address; no token unless ``with_token``)."""
    host = host or state['address']
    if ':' in host and not host.startswith('['):
        host = '[%s]' % host
    url = 'http://%s:%d' % (host, state['port'])
    return url + '/' + state['token'] if with_token and state.get('token') else url
