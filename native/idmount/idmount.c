// strata-idmount SRC DST HOSTID COUNT: binds SRC onto DST as an idmapped mount. On-disk ids
// 0..COUNT-1 appear as HOSTID..HOSTID+COUNT-1 on the host, i.e. as 0.. inside a user namespace that maps
// 0 -> HOSTID (a system-container machine, docs/design/system-container.md). Debian 12's runc 1.1 and
// util-linux 2.38 cannot make idmapped mounts, and Node cannot call mount_setattr: hence this helper.
//
// How: a throwaway child process unshares a user namespace that only carries the mapping; the tree of
// SRC is cloned (open_tree OPEN_TREE_CLONE, not recursive: submounts are not carried), idmapped with that
// namespace (mount_setattr MOUNT_ATTR_IDMAP), and attached at DST (move_mount). The namespace dies with
// the child; the mount keeps its idmapping. Undo with `umount DST`.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/mount.h>

static void die(const char *what) {
  fprintf(stderr, "strata-idmount: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void put(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die(path);
  if (write(fd, text, strlen(text)) != (ssize_t)strlen(text)) die(path);
  close(fd);
}

static unsigned long number(const char *text, const char *what) {
  char *end = NULL;
  errno = 0;
  unsigned long value = strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value > 4294967294UL) {
    fprintf(stderr, "strata-idmount: invalid %s: %s\n", what, text);
    exit(2);
  }
  return value;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: strata-idmount SRC DST HOSTID COUNT\n");
    return 2;
  }
  unsigned long host_id = number(argv[3], "HOSTID"), count = number(argv[4], "COUNT");
  if (count == 0 || host_id + count - 1 > 4294967294UL) {
    fprintf(stderr, "strata-idmount: invalid range %lu+%lu\n", host_id, count);
    return 2;
  }
  int go[2], ready[2];
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(ready, O_CLOEXEC) != 0) die("pipe");
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {  // holds a user namespace with the mapping until the parent is done with it
    close(go[1]);
    close(ready[0]);
    char c = unshare(CLONE_NEWUSER) == 0 ? 'r' : 'e';
    if (write(ready[1], &c, 1) != 1) _exit(1);
    if (read(go[0], &c, 1) < 0) _exit(1);  // EOF when the parent closes its end (or dies)
    _exit(0);
  }
  close(go[0]);
  close(ready[1]);
  char state = 0;
  if (read(ready[0], &state, 1) != 1 || state != 'r') {
    errno = state == 'e' ? EPERM : ECHILD;
    die("unshare(CLONE_NEWUSER) in the helper child");
  }
  char path[64], map[96];
  snprintf(map, sizeof map, "0 %lu %lu\n", host_id, count);
  snprintf(path, sizeof path, "/proc/%d/uid_map", (int)child);
  put(path, map);
  snprintf(path, sizeof path, "/proc/%d/setgroups", (int)child);
  put(path, "deny\n");
  snprintf(path, sizeof path, "/proc/%d/gid_map", (int)child);
  put(path, map);
  snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
  int userns = open(path, O_RDONLY | O_CLOEXEC);
  if (userns < 0) die("open the helper's user namespace");

  int tree = (int)syscall(SYS_open_tree, AT_FDCWD, argv[1], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  if (tree < 0) die("open_tree SRC");
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (__u64)userns};
  if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) die("mount_setattr MOUNT_ATTR_IDMAP (does SRC's filesystem support idmapped mounts?)");
  if (syscall(SYS_move_mount, tree, "", AT_FDCWD, argv[2], MOVE_MOUNT_F_EMPTY_PATH) != 0) die("move_mount onto DST");
  close(tree);
  close(userns);
  close(go[1]);
  waitpid(child, NULL, 0);
  return 0;
}
