// strata-tracefs: a FUSE filesystem mounted OVER a directory that serves that same directory's
// original contents and records, per step, which paths were read, listed, statted, probed (absent)
// and written. See native/tracefs/README.md for the control protocol.
//
// Design (ARCHITECTURE.md decision 4):
// - The backing directory is opened (O_PATH) BEFORE mounting over it; every operation is served
//   relative to that fd (openat/fstatat/... with AT_SYMLINK_NOFOLLOW), so we see the directory
//   underneath our own mount.
// - Inodes are path-keyed: nodeid -> (parent node, name), refcounted by lookup/forget. We hold no fd
//   per inode (the open-files hard limit is 20 000); fds exist only for files the kernel has open.
// - The kernel may cache entries, negative entries and attributes (timeouts > 0). Every entry and
//   inode we answered since the last step boundary is remembered ("dirty"), and `step` expires
//   them, so each step's first touch of a path reaches us again and is recorded.
// - No writeback cache: writes go straight to the backing directory, so a btrfs snapshot taken after
//   a step sees them.
#define FUSE_USE_VERSION 314
#define _GNU_SOURCE
#include <fuse_lowlevel.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// Options and global state

static const char *opt_dir;          // mountpoint == backing directory
static const char *opt_prefix = "";  // machine path of the directory, e.g. "/root/app"
static double opt_timeout = 3600.0;  // kernel entry/attr/negative cache timeout, seconds
static bool opt_xattr = false;       // serve xattrs (costs a round trip per write/exec)
static int opt_threads = 1;          // request threads; 1 = single-threaded loop

static int root_fd = -1;             // O_PATH fd of the backing directory (under our mount)
static struct fuse_session *session;
static bool can_expire_only;         // kernel supports FUSE_EXPIRE_ONLY entry notifications

// One lock for the node table, the trace sets and the dirty sets. Syscalls run outside it.
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("strata-tracefs: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) die("out of memory");
  return p;
}

static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n, size);
  if (!p) die("out of memory");
  return p;
}

static char *xstrdup(const char *s) {
  char *p = strdup(s);
  if (!p) die("out of memory");
  return p;
}

static uint64_t hash_key(uint64_t num, const char *str) {
  uint64_t h = 1469598103934665603ULL ^ (num * 0x9E3779B97F4A7C15ULL);
  if (str)
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) h = (h ^ *p) * 1099511628211ULL;
  return h ^ (h >> 29);
}

// ---------------------------------------------------------------------------------------------
// keyset: an insert-only open-addressing set of (number, string) keys, used for the trace
// categories (num = 0, str = relative path), dirty entries (num = parent nodeid, str = name) and
// dirty inodes (num = nodeid, str = NULL). An empty slot is {0, NULL}.

struct key {
  uint64_t num;
  char *str;
};

struct keyset {
  struct key *slots;
  size_t cap;  // power of two, or 0
  size_t count;
};

static void keyset_insert_slot(struct keyset *set, struct key key) {
  size_t mask = set->cap - 1;
  for (size_t i = hash_key(key.num, key.str) & mask;; i = (i + 1) & mask) {
    if (set->slots[i].num == 0 && set->slots[i].str == NULL) {
      set->slots[i] = key;
      set->count++;
      return;
    }
  }
}

static void keyset_add(struct keyset *set, uint64_t num, const char *str) {
  if (set->cap) {
    size_t mask = set->cap - 1;
    for (size_t i = hash_key(num, str) & mask;; i = (i + 1) & mask) {
      struct key *k = &set->slots[i];
      if (k->num == 0 && k->str == NULL) break;
      if (k->num == num && (k->str == str || (k->str && str && strcmp(k->str, str) == 0))) return;
    }
  }
  if ((set->count + 1) * 2 > set->cap) {
    struct keyset bigger = {xcalloc(set->cap ? set->cap * 2 : 64, sizeof(struct key)), set->cap ? set->cap * 2 : 64, 0};
    for (size_t i = 0; i < set->cap; i++)
      if (set->slots[i].num != 0 || set->slots[i].str != NULL) keyset_insert_slot(&bigger, set->slots[i]);
    free(set->slots);
    *set = bigger;
  }
  keyset_insert_slot(set, (struct key){num, str ? xstrdup(str) : NULL});
}

static void keyset_free(struct keyset *set) {
  for (size_t i = 0; i < set->cap; i++) free(set->slots[i].str);
  free(set->slots);
  *set = (struct keyset){0};
}

// ---------------------------------------------------------------------------------------------
// Trace recording

enum trace_kind { TRACE_READ, TRACE_LISTED, TRACE_STATTED, TRACE_ABSENT, TRACE_WRITTEN, TRACE_KINDS };
static const char *const trace_names[TRACE_KINDS] = {"read", "listed", "statted", "absent", "written"};

static struct keyset trace[TRACE_KINDS];  // relative paths touched in the current window
static uint64_t window = 1;               // bumped at every `end`: lets handles record once per window
static struct keyset dirty_entries;       // (parent, name) the kernel may have cached since last `step`
static struct keyset dirty_inodes;        // nodeids whose attributes the kernel may have cached

// Caller holds the lock. `rel` is relative to the backing directory, "" for the directory itself.
static void record(enum trace_kind kind, const char *rel) { keyset_add(&trace[kind], 0, rel); }

// ---------------------------------------------------------------------------------------------
// Node table: nodeid -> node, and (parent nodeid, name) -> attached node.

struct node {
  uint64_t id;
  struct node *parent;
  char *name;          // NULL for the root
  bool attached;       // reachable as parent/name (false after unlink or being renamed over)
  uint64_t nlookup;    // kernel references (lookup/create/... minus forget)
  uint64_t children;   // nodes whose parent is this one (keeps this node alive for path building)
  ino_t ino;           // identity of the backing file, to notice replacement behind our back
  mode_t type;         // S_IFMT bits
  unsigned open_count; // open file handles
  int keep_fd;         // O_PATH fd kept when unlinked while open (fstat still works), else -1
  struct node *id_next, *name_next;
};

static struct node **by_id, **by_name;
static size_t table_cap, node_count;
static uint64_t next_id = FUSE_ROOT_ID + 1;
static struct node *root;

static size_t id_slot(uint64_t id) { return hash_key(id, NULL) & (table_cap - 1); }
static size_t name_slot(uint64_t parent, const char *name) { return hash_key(parent, name) & (table_cap - 1); }

static void table_link(struct node *n) {
  size_t i = id_slot(n->id);
  n->id_next = by_id[i];
  by_id[i] = n;
  if (n->attached) {
    size_t j = name_slot(n->parent->id, n->name);
    n->name_next = by_name[j];
    by_name[j] = n;
  }
}

static void table_grow(void) {
  struct node **old_by_id = by_id;
  size_t old_cap = table_cap;
  table_cap = table_cap ? table_cap * 2 : 1024;
  by_id = xcalloc(table_cap, sizeof *by_id);
  free(by_name);
  by_name = xcalloc(table_cap, sizeof *by_name);
  for (size_t i = 0; i < old_cap; i++)
    for (struct node *n = old_by_id[i], *next; n; n = next) {
      next = n->id_next;
      table_link(n);
    }
  free(old_by_id);
}

static struct node *node_by_id(fuse_ino_t id) {
  for (struct node *n = by_id[id_slot(id)]; n; n = n->id_next)
    if (n->id == id) return n;
  return NULL;
}

static struct node *node_child(struct node *parent, const char *name) {
  for (struct node *n = by_name[name_slot(parent->id, name)]; n; n = n->name_next)
    if (n->parent == parent && n->attached && strcmp(n->name, name) == 0) return n;
  return NULL;
}

static void node_detach(struct node *n) {
  if (!n->attached) return;
  struct node **p = &by_name[name_slot(n->parent->id, n->name)];
  while (*p != n) p = &(*p)->name_next;
  *p = n->name_next;
  n->attached = false;
}

static void node_attach(struct node *n, struct node *parent, const char *name) {
  node_detach(n);
  if (n->parent != parent) {
    parent->children++;
    n->parent->children--;  // the old parent is still referenced by the kernel (it sent us its id)
    n->parent = parent;
  }
  if (strcmp(n->name, name) != 0) {
    free(n->name);
    n->name = xstrdup(name);
  }
  n->attached = true;
  size_t j = name_slot(parent->id, name);
  n->name_next = by_name[j];
  by_name[j] = n;
}

static struct node *node_new(struct node *parent, const char *name, const struct stat *st) {
  if (node_count + 1 > table_cap) table_grow();
  struct node *n = xcalloc(1, sizeof *n);
  n->id = next_id++;
  n->parent = parent;
  n->name = xstrdup(name);
  n->attached = true;
  n->ino = st->st_ino;
  n->type = st->st_mode & S_IFMT;
  n->keep_fd = -1;
  parent->children++;
  node_count++;
  table_link(n);
  return n;
}

// Frees nodes nobody references any more (kernel forgot them, no children), walking up the parents.
static void node_maybe_free(struct node *n) {
  while (n && n != root && n->nlookup == 0 && n->children == 0) {
    struct node *parent = n->parent;
    node_detach(n);
    struct node **p = &by_id[id_slot(n->id)];
    while (*p != n) p = &(*p)->id_next;
    *p = n->id_next;
    if (n->keep_fd >= 0) close(n->keep_fd);
    free(n->name);
    free(n);
    node_count--;
    parent->children--;
    n = parent;
  }
}

// The path of `n` relative to the backing directory ("" for the root) into buf. Returns false when
// the node (or an ancestor) is no longer attached, or the path is too long.
static bool node_path(struct node *n, char *buf, size_t cap) {
  const char *parts[PATH_MAX / 2];
  size_t depth = 0, len = 0;
  for (struct node *p = n; p != root; p = p->parent) {
    if (!p->attached || depth == sizeof parts / sizeof *parts) return false;
    parts[depth++] = p->name;
    len += strlen(p->name) + 1;
  }
  if (len + 1 > cap) return false;
  char *out = buf;
  for (size_t i = depth; i-- > 0;) {
    size_t l = strlen(parts[i]);
    memcpy(out, parts[i], l);
    out += l;
    if (i) *out++ = '/';
  }
  *out = '\0';
  return true;
}

static bool child_path(struct node *parent, const char *name, char *buf, size_t cap) {
  if (!node_path(parent, buf, cap)) return false;
  size_t len = strlen(buf), nlen = strlen(name);
  if (len + nlen + 2 > cap) return false;
  if (len) buf[len++] = '/';
  memcpy(buf + len, name, nlen + 1);
  return true;
}

// A path usable with *at(root_fd, ...): the root is ".".
static const char *at_path(const char *rel) { return rel[0] ? rel : "."; }

// ---------------------------------------------------------------------------------------------
// Request helpers

#define PATH_CAP (PATH_MAX * 2)

struct handle {
  int fd;
  uint64_t read_window, write_window, listed_window;  // last window this handle recorded in
  DIR *dir;
  struct dirent *pending;  // readdir entry that did not fit the previous reply
  off_t dir_offset;
};

static struct handle *handle_of(struct fuse_file_info *fi) { return (struct handle *)(uintptr_t)fi->fh; }

// Looks up the node and its path under the lock. Returns 0 or an errno.
static int path_of_ino(fuse_ino_t ino, char *buf) {
  pthread_mutex_lock(&lock);
  struct node *n = node_by_id(ino);
  int err = !n ? ESTALE : node_path(n, buf, PATH_CAP) ? 0 : ENOENT;
  pthread_mutex_unlock(&lock);
  return err;
}

static int path_of_child(fuse_ino_t parent, const char *name, char *buf) {
  pthread_mutex_lock(&lock);
  struct node *p = node_by_id(parent);
  int err = !p ? ESTALE : child_path(p, name, buf, PATH_CAP) ? 0 : ENAMETOOLONG;
  pthread_mutex_unlock(&lock);
  return err;
}

static void record_path(enum trace_kind kind, const char *rel) {
  pthread_mutex_lock(&lock);
  record(kind, rel);
  pthread_mutex_unlock(&lock);
}

// Records `kind` for the handle's inode at most once per window (reads and writes come in chunks).
static void record_handle(fuse_ino_t ino, struct handle *h, uint64_t *last_window, enum trace_kind kind) {
  if (__atomic_load_n(last_window, __ATOMIC_RELAXED) == __atomic_load_n(&window, __ATOMIC_RELAXED)) return;
  char rel[PATH_CAP];
  pthread_mutex_lock(&lock);
  struct node *n = node_by_id(ino);
  if (n && node_path(n, rel, sizeof rel)) record(kind, rel);
  *last_window = window;
  pthread_mutex_unlock(&lock);
  (void)h;
}

// Registers a looked-up/created entry: finds or creates the node, takes a kernel reference,
// remembers what the kernel may cache, records `kind`, and fills `e`. Caller holds the lock.
static void entry_locked(struct node *parent, const char *name, const struct stat *st, const char *rel,
                         enum trace_kind kind, struct fuse_entry_param *e) {
  struct node *n = node_child(parent, name);
  if (n && (n->ino != st->st_ino || n->type != (st->st_mode & S_IFMT))) {
    node_detach(n);  // replaced behind our back: the kernel must see a new inode
    n = NULL;
  }
  if (!n) n = node_new(parent, name, st);
  n->nlookup++;
  record(kind, rel);
  keyset_add(&dirty_entries, parent->id, name);
  keyset_add(&dirty_inodes, n->id, NULL);
  memset(e, 0, sizeof *e);
  e->ino = n->id;
  e->attr = *st;
  e->attr_timeout = opt_timeout;
  e->entry_timeout = opt_timeout;
}

// Replies with the entry for `name` in `parent` whose attributes are `st`, recording it as `kind`.
static void reply_entry(fuse_req_t req, fuse_ino_t parent, const char *name, const char *rel, const struct stat *st, enum trace_kind kind) {
  struct fuse_entry_param e;
  pthread_mutex_lock(&lock);
  struct node *p = node_by_id(parent);
  if (!p) {
    pthread_mutex_unlock(&lock);
    fuse_reply_err(req, ESTALE);
    return;
  }
  entry_locked(p, name, st, rel, kind, &e);
  pthread_mutex_unlock(&lock);
  fuse_reply_entry(req, &e);
}

// Replies to a request that created `name` in `parent` (mknod/mkdir/symlink/link).
static void reply_new_entry(fuse_req_t req, fuse_ino_t parent, const char *name, const char *rel) {
  struct stat st;
  if (fstatat(root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  reply_entry(req, parent, name, rel, &st, TRACE_WRITTEN);
}

static void parent_of(const char *rel, char *out) {
  const char *slash = strrchr(rel, '/');
  size_t len = slash ? (size_t)(slash - rel) : 0;
  memcpy(out, rel, len);
  out[len] = '\0';
}

// New files belong to the caller, not to root (the daemon). A set-gid parent directory already
// gave the right group.
static void chown_to_caller(fuse_req_t req, const char *rel) {
  const struct fuse_ctx *ctx = fuse_req_ctx(req);
  if (ctx->uid == 0 && ctx->gid == 0) return;
  char parent_rel[PATH_CAP];
  parent_of(rel, parent_rel);
  struct stat parent_st;
  gid_t gid = ctx->gid;
  if (fstatat(root_fd, at_path(parent_rel), &parent_st, 0) == 0 && (parent_st.st_mode & S_ISGID)) gid = (gid_t)-1;
  if (fchownat(root_fd, rel, ctx->uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
    fprintf(stderr, "strata-tracefs: chown %s: %s\n", rel, strerror(errno));
}

// ---------------------------------------------------------------------------------------------
// FUSE operations

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  (void)userdata;
  can_expire_only = (conn->capable & FUSE_CAP_EXPIRE_ONLY) != 0;
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;  // writes must reach the backing dir immediately
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  char rel[PATH_CAP];
  int err = path_of_child(parent, name, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  struct stat st;
  if (fstatat(root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    err = errno;
    if (err == ENOENT) {
      pthread_mutex_lock(&lock);
      record(TRACE_ABSENT, rel);
      keyset_add(&dirty_entries, parent, name);  // the kernel caches the negative entry
      pthread_mutex_unlock(&lock);
      struct fuse_entry_param e = {.ino = 0, .entry_timeout = opt_timeout};
      fuse_reply_entry(req, &e);
    } else {
      fuse_reply_err(req, err);
    }
    return;
  }
  reply_entry(req, parent, name, rel, &st, TRACE_STATTED);
}

static void forget_locked(fuse_ino_t ino, uint64_t nlookup) {
  struct node *n = node_by_id(ino);
  if (!n || n == root) return;
  n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
  node_maybe_free(n);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  pthread_mutex_lock(&lock);
  forget_locked(ino, nlookup);
  pthread_mutex_unlock(&lock);
  fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < count; i++) forget_locked(forgets[i].ino, forgets[i].nlookup);
  pthread_mutex_unlock(&lock);
  fuse_reply_none(req);
}

// stat of a node: through the open handle if any, else by path, else (unlinked but open) keep_fd.
static int stat_node(fuse_ino_t ino, struct fuse_file_info *fi, struct stat *st, char *rel) {
  rel[0] = '\0';
  if (fi) return fstat(handle_of(fi)->fd, st) == 0 ? 0 : errno;
  pthread_mutex_lock(&lock);
  struct node *n = node_by_id(ino);
  int err = 0, keep_fd = -1;
  if (!n) err = ESTALE;
  else if (!node_path(n, rel, PATH_CAP)) {
    rel[0] = '\0';
    keep_fd = n->keep_fd >= 0 ? dup(n->keep_fd) : -1;
    err = keep_fd >= 0 ? 0 : ENOENT;
  }
  pthread_mutex_unlock(&lock);
  if (err) return err;
  if (keep_fd >= 0) {
    int r = fstat(keep_fd, st) == 0 ? 0 : errno;
    close(keep_fd);
    return r;
  }
  return fstatat(root_fd, at_path(rel), st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  char rel[PATH_CAP];
  struct stat st;
  int err = stat_node(ino, fi, &st, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  pthread_mutex_lock(&lock);
  struct node *n = node_by_id(ino);
  if (n && (fi || rel[0] || n == root) && node_path(n, rel, sizeof rel)) record(TRACE_STATTED, rel);
  keyset_add(&dirty_inodes, ino, NULL);
  pthread_mutex_unlock(&lock);
  fuse_reply_attr(req, &st, opt_timeout);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  char rel[PATH_CAP];
  int err = path_of_ino(ino, rel);
  if (err && !fi) {
    fuse_reply_err(req, err);
    return;
  }
  bool by_fd = fi != NULL;
  int fd = by_fd ? handle_of(fi)->fd : -1;
  if (!err) record_path(TRACE_WRITTEN, rel);

  if (to_set & FUSE_SET_ATTR_MODE) {
    int r = by_fd ? fchmod(fd, attr->st_mode) : fchmodat(root_fd, at_path(rel), attr->st_mode, 0);
    if (r != 0) goto fail;
  }
  if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) {
    uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1;
    gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1;
    int r = by_fd ? fchown(fd, uid, gid) : fchownat(root_fd, at_path(rel), uid, gid, AT_SYMLINK_NOFOLLOW);
    if (r != 0) goto fail;
  }
  if (to_set & FUSE_SET_ATTR_SIZE) {
    int r;
    if (by_fd) {
      r = ftruncate(fd, attr->st_size);
    } else {
      int tfd = openat(root_fd, at_path(rel), O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
      r = tfd < 0 ? -1 : ftruncate(tfd, attr->st_size);
      if (tfd >= 0) {
        int saved = errno;
        close(tfd);
        errno = saved;
      }
    }
    if (r != 0) goto fail;
  }
  if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)) {
    struct timespec tv[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) tv[0].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_ATIME) tv[0] = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) tv[1].tv_nsec = UTIME_NOW;
    else if (to_set & FUSE_SET_ATTR_MTIME) tv[1] = attr->st_mtim;
    int r = by_fd ? futimens(fd, tv) : utimensat(root_fd, at_path(rel), tv, AT_SYMLINK_NOFOLLOW);
    if (r != 0) goto fail;
  }
  op_getattr(req, ino, fi);
  return;
fail:
  fuse_reply_err(req, errno);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  char rel[PATH_CAP], target[PATH_MAX + 1];
  int err = path_of_ino(ino, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  ssize_t len = readlinkat(root_fd, rel, target, sizeof target);
  if (len < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  if (len == (ssize_t)sizeof target) {
    fuse_reply_err(req, ENAMETOOLONG);
    return;
  }
  target[len] = '\0';
  record_path(TRACE_STATTED, rel);
  fuse_reply_readlink(req, target);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  char rel[PATH_CAP];
  int err = path_of_child(parent, name, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  if (mknodat(root_fd, rel, mode, rdev) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  chown_to_caller(req, rel);
  reply_new_entry(req, parent, name, rel);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  char rel[PATH_CAP];
  int err = path_of_child(parent, name, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  if (mkdirat(root_fd, rel, mode) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  chown_to_caller(req, rel);
  reply_new_entry(req, parent, name, rel);
}

static void op_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name) {
  char rel[PATH_CAP];
  int err = path_of_child(parent, name, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  if (symlinkat(target, root_fd, rel) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  chown_to_caller(req, rel);
  reply_new_entry(req, parent, name, rel);
}

// A hard link gets its own node (path-keyed table); the kernel accepts a different nodeid.
static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  char old_rel[PATH_CAP], rel[PATH_CAP];
  int err = path_of_ino(ino, old_rel);
  if (!err) err = path_of_child(newparent, newname, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  if (linkat(root_fd, old_rel, root_fd, rel, 0) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  record_path(TRACE_WRITTEN, old_rel);  // its link count changed
  reply_new_entry(req, newparent, newname, rel);
}

// Before removing or replacing a node that is still open, keep an O_PATH fd so fstat keeps working.
static void keep_if_open(fuse_ino_t parent, const char *name, const char *rel) {
  pthread_mutex_lock(&lock);
  struct node *p = node_by_id(parent);
  struct node *n = p ? node_child(p, name) : NULL;
  bool wanted = n && n->open_count > 0 && n->keep_fd < 0;
  pthread_mutex_unlock(&lock);
  if (!wanted) return;
  int fd = openat(root_fd, rel, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  pthread_mutex_lock(&lock);
  p = node_by_id(parent);
  n = p ? node_child(p, name) : NULL;
  if (n && n->keep_fd < 0) {
    n->keep_fd = fd;
    fd = -1;
  }
  pthread_mutex_unlock(&lock);
  if (fd >= 0) close(fd);
}

static void remove_entry(fuse_req_t req, fuse_ino_t parent, const char *name, int flags) {
  char rel[PATH_CAP];
  int err = path_of_child(parent, name, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  keep_if_open(parent, name, rel);
  if (unlinkat(root_fd, rel, flags) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  pthread_mutex_lock(&lock);
  record(TRACE_WRITTEN, rel);
  keyset_add(&dirty_entries, parent, name);  // the kernel may keep a negative entry
  struct node *p = node_by_id(parent);
  struct node *n = p ? node_child(p, name) : NULL;
  if (n) node_detach(n);
  pthread_mutex_unlock(&lock);
  fuse_reply_err(req, 0);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) { remove_entry(req, parent, name, 0); }
static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  remove_entry(req, parent, name, AT_REMOVEDIR);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags) {
  char rel[PATH_CAP], new_rel[PATH_CAP];
  int err = path_of_child(parent, name, rel);
  if (!err) err = path_of_child(newparent, newname, new_rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  if (!(flags & RENAME_EXCHANGE)) keep_if_open(newparent, newname, new_rel);
  if (renameat2(root_fd, rel, root_fd, new_rel, flags) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  pthread_mutex_lock(&lock);
  record(TRACE_WRITTEN, rel);
  record(TRACE_WRITTEN, new_rel);
  keyset_add(&dirty_entries, parent, name);
  keyset_add(&dirty_entries, newparent, newname);
  struct node *p = node_by_id(parent), *np = node_by_id(newparent);
  if (p && np) {
    struct node *moved = node_child(p, name), *replaced = node_child(np, newname);
    if (replaced && replaced != moved) {
      if (flags & RENAME_EXCHANGE) node_attach(replaced, p, name);
      else node_detach(replaced);
    }
    if (moved) node_attach(moved, np, newname);
  }
  pthread_mutex_unlock(&lock);
  fuse_reply_err(req, 0);
}

static void open_done(fuse_ino_t ino, struct fuse_file_info *fi, int fd, const char *rel, bool created) {
  struct handle *h = xcalloc(1, sizeof *h);
  h->fd = fd;
  fi->fh = (uintptr_t)h;
  fi->keep_cache = 1;  // page cache survives opens; step boundaries and size/mtime changes drop it
  int acc = fi->flags & O_ACCMODE;
  pthread_mutex_lock(&lock);
  struct node *n = node_by_id(ino);
  if (n) n->open_count++;
  if (acc == O_RDONLY || acc == O_RDWR) {
    record(TRACE_READ, rel);
    h->read_window = window;
  }
  if (created || (fi->flags & O_TRUNC)) {
    record(TRACE_WRITTEN, rel);
    h->write_window = window;
  }
  pthread_mutex_unlock(&lock);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  char rel[PATH_CAP];
  int err = path_of_ino(ino, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  int flags = (fi->flags & ~(O_CREAT | O_EXCL | O_NOCTTY)) | O_CLOEXEC | O_NOFOLLOW;
  int fd = openat(root_fd, rel, flags);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  open_done(ino, fi, fd, rel, false);
  if (fuse_reply_open(req, fi) == -ENOENT) {  // interrupted: the kernel will not release it
    close(fd);
    free(handle_of(fi));
  }
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  char rel[PATH_CAP];
  int err = path_of_child(parent, name, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  int fd = openat(root_fd, rel, (fi->flags & ~O_NOCTTY) | O_CREAT | O_CLOEXEC | O_NOFOLLOW, mode);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  chown_to_caller(req, rel);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    err = errno;
    close(fd);
    fuse_reply_err(req, err);
    return;
  }
  struct fuse_entry_param e;
  pthread_mutex_lock(&lock);
  struct node *p = node_by_id(parent);
  if (!p) {
    pthread_mutex_unlock(&lock);
    close(fd);
    fuse_reply_err(req, ESTALE);
    return;
  }
  entry_locked(p, name, &st, rel, TRACE_WRITTEN, &e);
  pthread_mutex_unlock(&lock);
  open_done(e.ino, fi, fd, rel, true);
  if (fuse_reply_create(req, &e, fi) == -ENOENT) {
    close(fd);
    free(handle_of(fi));
  }
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  struct handle *h = handle_of(fi);
  record_handle(ino, h, &h->read_window, TRACE_READ);  // e.g. a background process's old fd
  struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
  buf.buf[0].fd = h->fd;
  buf.buf[0].pos = off;
  fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

static void op_write_buf(fuse_req_t req, fuse_ino_t ino, struct fuse_bufvec *in, off_t off, struct fuse_file_info *fi) {
  struct handle *h = handle_of(fi);
  record_handle(ino, h, &h->write_window, TRACE_WRITTEN);
  struct fuse_bufvec out = FUSE_BUFVEC_INIT(fuse_buf_size(in));
  out.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
  out.buf[0].fd = h->fd;
  out.buf[0].pos = off;
  ssize_t written = fuse_buf_copy(&out, in, 0);
  if (written < 0) fuse_reply_err(req, (int)-written);
  else fuse_reply_write(req, (size_t)written);
}

// No flush op: nothing is buffered here and locks are the kernel's (no lock ops), so ENOSYS tells
// the kernel to stop sending FLUSH, saving a synchronous round trip on every close().

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  struct handle *h = handle_of(fi);
  close(h->fd);
  free(h);
  pthread_mutex_lock(&lock);
  struct node *n = node_by_id(ino);
  if (n && n->open_count > 0 && --n->open_count == 0 && n->keep_fd >= 0) {
    close(n->keep_fd);
    n->keep_fd = -1;
  }
  pthread_mutex_unlock(&lock);
  fuse_reply_err(req, 0);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  int fd = handle_of(fi)->fd;
  fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : errno);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  struct handle *h = handle_of(fi);
  record_handle(ino, h, &h->write_window, TRACE_WRITTEN);
  fuse_reply_err(req, fallocate(h->fd, mode, off, len) == 0 ? 0 : errno);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  char rel[PATH_CAP];
  int err = path_of_ino(ino, rel);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  int fd = openat(root_fd, at_path(rel), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  DIR *dir = fd < 0 ? NULL : fdopendir(fd);
  if (!dir) {
    err = errno;
    if (fd >= 0) close(fd);
    fuse_reply_err(req, err);
    return;
  }
  struct handle *h = xcalloc(1, sizeof *h);
  h->fd = fd;
  h->dir = dir;
  fi->fh = (uintptr_t)h;
  if (fuse_reply_open(req, fi) == -ENOENT) {
    closedir(dir);
    free(h);
  }
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  struct handle *h = handle_of(fi);
  record_handle(ino, h, &h->listed_window, TRACE_LISTED);
  char *buf = xmalloc(size);
  size_t used = 0;
  int err = 0;
  if (off != h->dir_offset) {
    seekdir(h->dir, off);
    h->pending = NULL;
    h->dir_offset = off;
  }
  for (;;) {
    if (!h->pending) {
      errno = 0;
      h->pending = readdir(h->dir);
      if (!h->pending) {
        err = errno;
        break;
      }
    }
    struct stat st = {.st_ino = h->pending->d_ino, .st_mode = (mode_t)h->pending->d_type << 12};
    size_t len = fuse_add_direntry(req, buf + used, size - used, h->pending->d_name, &st, h->pending->d_off);
    if (len > size - used) break;
    used += len;
    h->dir_offset = h->pending->d_off;
    h->pending = NULL;
  }
  if (err && used == 0) fuse_reply_err(req, err);
  else fuse_reply_buf(req, buf, used);
  free(buf);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  (void)ino;
  struct handle *h = handle_of(fi);
  closedir(h->dir);
  free(h);
  fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  (void)ino;
  int fd = dirfd(handle_of(fi)->dir);
  fuse_reply_err(req, (datasync ? fdatasync(fd) : fsync(fd)) == 0 ? 0 : errno);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  struct statvfs sv;
  if (fstatvfs(root_fd, &sv) != 0) fuse_reply_err(req, errno);
  else fuse_reply_statfs(req, &sv);
}

// xattrs go through a real fd (O_PATH fds cannot do them and /proc may be the machine's). Only
// regular files and directories: opening a device or fifo could have side effects.
static int open_for_xattr(fuse_ino_t ino, char *rel) {
  int err = path_of_ino(ino, rel);
  if (err) {
    errno = err;
    return -1;
  }
  struct stat st;
  if (fstatat(root_fd, at_path(rel), &st, AT_SYMLINK_NOFOLLOW) != 0) return -1;
  if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    errno = ENOTSUP;
    return -1;
  }
  return openat(root_fd, at_path(rel), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
}

static void reply_xattr_result(fuse_req_t req, size_t size, ssize_t len, const char *value) {
  if (len < 0) fuse_reply_err(req, errno);
  else if (size == 0) fuse_reply_xattr(req, (size_t)len);
  else fuse_reply_buf(req, value, (size_t)len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  if (!opt_xattr) {
    fuse_reply_err(req, ENOSYS);  // the kernel stops asking: no round trip per exec/write
    return;
  }
  char rel[PATH_CAP];
  int fd = open_for_xattr(ino, rel);
  if (fd < 0) {
    fuse_reply_err(req, errno == ENOTSUP ? ENODATA : errno);
    return;
  }
  char *value = size ? xmalloc(size) : NULL;
  ssize_t len = fgetxattr(fd, name, value, size);
  int saved = errno;
  close(fd);
  errno = saved;
  reply_xattr_result(req, size, len, value);
  free(value);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  if (!opt_xattr) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  char rel[PATH_CAP];
  int fd = open_for_xattr(ino, rel);
  if (fd < 0) {
    if (errno == ENOTSUP) reply_xattr_result(req, size, 0, "");
    else fuse_reply_err(req, errno);
    return;
  }
  char *value = size ? xmalloc(size) : NULL;
  ssize_t len = flistxattr(fd, value, size);
  int saved = errno;
  close(fd);
  errno = saved;
  reply_xattr_result(req, size, len, value);
  free(value);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  if (!opt_xattr) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  char rel[PATH_CAP];
  int fd = open_for_xattr(ino, rel);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  int r = fsetxattr(fd, name, value, size, flags) == 0 ? 0 : errno;
  close(fd);
  if (r == 0) record_path(TRACE_WRITTEN, rel);
  fuse_reply_err(req, r);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  if (!opt_xattr) {
    fuse_reply_err(req, ENOSYS);
    return;
  }
  char rel[PATH_CAP];
  int fd = open_for_xattr(ino, rel);
  if (fd < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  int r = fremovexattr(fd, name) == 0 ? 0 : errno;
  close(fd);
  if (r == 0) record_path(TRACE_WRITTEN, rel);
  fuse_reply_err(req, r);
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .symlink = op_symlink,
    .link = op_link,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .rename = op_rename,
    .open = op_open,
    .create = op_create,
    .read = op_read,
    .write_buf = op_write_buf,
    .release = op_release,
    .fsync = op_fsync,
    .fallocate = op_fallocate,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .setxattr = op_setxattr,
    .removexattr = op_removexattr,
};

// ---------------------------------------------------------------------------------------------
// Control channel (stdin/stdout, one line per command)

// Expires everything the kernel may have cached since the last boundary, so the new step's first
// touch of every path is a request we see and record.
static void invalidate_kernel_caches(void) {
  pthread_mutex_lock(&lock);
  struct keyset entries = dirty_entries, inodes = dirty_inodes;
  dirty_entries = (struct keyset){0};
  dirty_inodes = (struct keyset){0};
  // Open files: drop their page cache too, so reads on fds opened in an earlier step reach us.
  size_t open_cap = 0, open_len = 0;
  uint64_t *open_ids = NULL;
  for (size_t i = 0; i < table_cap; i++)
    for (struct node *n = by_id[i]; n; n = n->id_next)
      if (n->open_count > 0) {
        if (open_len == open_cap) {
          open_cap = open_cap ? open_cap * 2 : 64;
          open_ids = realloc(open_ids, open_cap * sizeof *open_ids);
          if (!open_ids) die("out of memory");
        }
        open_ids[open_len++] = n->id;
      }
  pthread_mutex_unlock(&lock);

  // Errors are expected and harmless: ENOENT means the kernel no longer holds that entry/inode.
  for (size_t i = 0; i < entries.cap; i++) {
    struct key *k = &entries.slots[i];
    if (!k->str) continue;
    if (can_expire_only)
      fuse_lowlevel_notify_expire_entry(session, k->num, k->str, strlen(k->str), FUSE_LL_EXPIRE_ONLY);
    else
      fuse_lowlevel_notify_inval_entry(session, k->num, k->str, strlen(k->str));
  }
  for (size_t i = 0; i < inodes.cap; i++)
    if (inodes.slots[i].num) fuse_lowlevel_notify_inval_inode(session, inodes.slots[i].num, -1, 0);
  for (size_t i = 0; i < open_len; i++) fuse_lowlevel_notify_inval_inode(session, open_ids[i], 0, 0);
  free(open_ids);
  keyset_free(&entries);
  keyset_free(&inodes);
}

static void put_json_string(FILE *out, const char *s) {
  fputc('"', out);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
    else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
    else fputc(*p, out);
  }
  fputc('"', out);
}

// Writes the current window's trace as one JSON line of absolute machine paths and starts a new window.
static void flush_trace(FILE *out, long step) {
  pthread_mutex_lock(&lock);
  struct keyset taken[TRACE_KINDS];
  memcpy(taken, trace, sizeof trace);
  memset(trace, 0, sizeof trace);
  __atomic_add_fetch(&window, 1, __ATOMIC_RELAXED);
  pthread_mutex_unlock(&lock);

  bool prefix_is_root = strcmp(opt_prefix, "/") == 0;
  fprintf(out, "trace {\"step\":%ld", step);
  for (int kind = 0; kind < TRACE_KINDS; kind++) {
    fprintf(out, ",\"%s\":[", trace_names[kind]);
    bool first = true;
    for (size_t i = 0; i < taken[kind].cap; i++) {
      const char *rel = taken[kind].slots[i].str;
      if (!rel) continue;
      if (!first) fputc(',', out);
      first = false;
      char *abs = NULL;
      if (asprintf(&abs, "%s%s%s", prefix_is_root ? "" : opt_prefix, rel[0] || prefix_is_root ? "/" : "", rel) < 0)
        die("out of memory");
      put_json_string(out, abs);
      free(abs);
    }
    fputc(']', out);
    keyset_free(&taken[kind]);
  }
  fputs("}\n", out);
  fflush(out);
}

static void unmount_now(void) { umount2(opt_dir, MNT_DETACH); }

static void on_signal(int sig) {
  (void)sig;
  unmount_now();
  _exit(0);
}

static void *control_loop(void *arg) {
  (void)arg;
  char line[256];
  long step = 0;
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\r\n")] = '\0';
    if (strncmp(line, "step ", 5) == 0) {
      step = strtol(line + 5, NULL, 10);
      invalidate_kernel_caches();
      printf("ok step %ld\n", step);
    } else if (strcmp(line, "end") == 0) {
      flush_trace(stdout, step);
    } else if (strcmp(line, "exit") == 0) {
      break;
    } else {
      printf("error unknown command: %s\n", line);
    }
    fflush(stdout);
  }
  // exit or EOF (the controller died): unmount; the session loop ends when the kernel tears the
  // connection down. If processes keep the mount busy, closing /dev/fuse (our exit) aborts it.
  printf("bye\n");
  fflush(stdout);
  unmount_now();
  fuse_session_exit(session);
  sleep(3);
  _exit(0);
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// main

static void usage(void) {
  fputs("usage: strata-tracefs --dir DIR --prefix MACHINE_PATH [--mount-ns /proc/PID/ns/mnt]\n"
        "                      [--user-ns /proc/PID/ns/user]\n"
        "                      [--timeout SECONDS] [--xattr]\n"
        "Mounts a tracing FUSE filesystem over DIR serving DIR's own contents. Commands on stdin:\n"
        "  step N   expire kernel caches, attribute what follows to step N  -> ok step N\n"
        "  end      -> trace {json}   (the touches since the previous end)\n"
        "  exit     unmount and exit                                        -> bye\n",
        stderr);
  exit(2);
}

int main(int argc, char **argv) {
  const char *mount_ns = NULL, *user_ns = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--dir") == 0 && i + 1 < argc) opt_dir = argv[++i];
    else if (strcmp(a, "--prefix") == 0 && i + 1 < argc) opt_prefix = argv[++i];
    else if (strcmp(a, "--mount-ns") == 0 && i + 1 < argc) mount_ns = argv[++i];
    else if (strcmp(a, "--user-ns") == 0 && i + 1 < argc) user_ns = argv[++i];
    else if (strcmp(a, "--timeout") == 0 && i + 1 < argc) opt_timeout = strtod(argv[++i], NULL);
    else if (strcmp(a, "--xattr") == 0) opt_xattr = true;
    else if (strcmp(a, "--threads") == 0 && i + 1 < argc) opt_threads = atoi(argv[++i]);
    else usage();
  }
  if (!opt_dir || opt_dir[0] != '/') usage();
  size_t plen = strlen(opt_prefix);
  if (plen == 0 || opt_prefix[0] != '/' || (plen > 1 && opt_prefix[plen - 1] == '/'))
    die("--prefix must be an absolute path without a trailing slash");

  umask(0);  // modes from the kernel already have the caller's umask applied
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);

  // The namespace files are opened first, with the host's privileges.
  int mount_ns_fd = -1, user_ns_fd = -1;
  if (mount_ns && (mount_ns_fd = open(mount_ns, O_RDONLY | O_CLOEXEC)) < 0) die("open %s: %s", mount_ns, strerror(errno));
  if (user_ns && (user_ns_fd = open(user_ns, O_RDONLY | O_CLOEXEC)) < 0) die("open %s: %s", user_ns, strerror(errno));

  // A machine with its own user namespace (a system container) has its root mounted idmapped: host
  // uid 0 is not mapped there, so every create would fail with EOVERFLOW. Join its user namespace
  // first: the FUSE mount then belongs to it, and the kernel requires /dev/fuse to be opened by a
  // process in the mount's user namespace (opened before joining, the mount fails with EINVAL).
  if (user_ns_fd >= 0 && setns(user_ns_fd, CLONE_NEWUSER) != 0) die("setns %s: %s", user_ns, strerror(errno));

  // /dev/fuse is opened in OUR mount namespace: the machine's may not have it.
  int fuse_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (fuse_fd < 0) die("open /dev/fuse: %s", strerror(errno));

  // Then become the machine's root (host uid hostId.., which its idmapped root maps to 0 on disk).
  // After the open: /dev/fuse is 0600 host root, which the machine's root is not.
  if (user_ns_fd >= 0 && (setgroups(0, NULL) != 0 || setresgid(0, 0, 0) != 0 || setresuid(0, 0, 0) != 0))
    die("become root of %s: %s", user_ns, strerror(errno));

  if (mount_ns_fd >= 0) {  // must happen before any thread exists
    if (setns(mount_ns_fd, CLONE_NEWNS) != 0) die("setns %s: %s", mount_ns, strerror(errno));
    close(mount_ns_fd);
  }
  if (user_ns_fd >= 0) close(user_ns_fd);

  root_fd = open(opt_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) die("open %s: %s", opt_dir, strerror(errno));
  struct stat root_st;
  if (fstat(root_fd, &root_st) != 0) die("stat %s: %s", opt_dir, strerror(errno));

  table_grow();
  root = xcalloc(1, sizeof *root);
  root->id = FUSE_ROOT_ID;
  root->parent = root;
  root->nlookup = 1;
  root->ino = root_st.st_ino;
  root->type = S_IFDIR;
  root->keep_fd = -1;
  node_count = 1;
  table_link(root);

  char *argv_fuse[] = {argv[0], NULL};
  struct fuse_args args = FUSE_ARGS_INIT(1, argv_fuse);
  session = fuse_session_new(&args, &ops, sizeof ops, NULL);
  if (!session) die("fuse_session_new failed");

  // Mount ourselves (we are root) with the fd opened above; libfuse then adopts the fd.
  char mount_opts[256];
  snprintf(mount_opts, sizeof mount_opts,
           "fd=%d,rootmode=%o,user_id=0,group_id=0,allow_other,default_permissions", fuse_fd,
           root_st.st_mode & S_IFMT);
  if (mount("strata-tracefs", opt_dir, "fuse.strata-tracefs", MS_NOSUID | MS_NODEV, mount_opts) != 0)
    die("mount %s: %s", opt_dir, strerror(errno));
  char fd_path[32];
  snprintf(fd_path, sizeof fd_path, "/dev/fd/%d", fuse_fd);
  if (fuse_session_mount(session, fd_path) != 0) {
    unmount_now();
    die("fuse_session_mount failed");
  }

  struct sigaction sa = {.sa_handler = on_signal};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  printf("ready\n");
  fflush(stdout);
  pthread_t control;
  if (pthread_create(&control, NULL, control_loop, NULL) != 0) {
    unmount_now();
    die("cannot start the control thread");
  }

  int r;
  if (opt_threads <= 1) {
    r = fuse_session_loop(session);
  } else {
    struct fuse_loop_config *loop_config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(loop_config, (unsigned)opt_threads);
    fuse_loop_cfg_set_idle_threads(loop_config, (unsigned)opt_threads);
    r = fuse_session_loop_mt(session, loop_config);
  }
  // The loop ends when the kernel tears the connection down (unmounted by us or someone else).
  unmount_now();
  _exit(r == 0 ? 0 : 1);
}
