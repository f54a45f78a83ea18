// A docker-compose app as a user's repository holds it, for the VM e2e tests and the `vm` benchmark:
// two services built FROM scratch around a static busybox (no registry is reachable here; the Layerfile
// copies /bin/busybox from Debian's busybox-static into each build context), a user network between
// them, and web's port 80 published on 8000. Each service serves its www/index.html.
export const composeFile = `version: "3.7"
services:
  web:
    build: ./web
    ports:
      - "8000:80"
    networks: [appnet]
  api:
    build: ./api
    networks: [appnet]
networks:
  appnet: {}
`;

export const busyboxHttpdDockerfile = `FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]
`;

/** The repository's files besides its Layerfile: compose file, both build contexts, their pages. */
export function composeAppFiles(pages: { web: string; api: string }): Record<string, string> {
  return {
    'docker-compose.yml': composeFile,
    'web/Dockerfile': busyboxHttpdDockerfile,
    'web/www/index.html': pages.web,
    'api/Dockerfile': busyboxHttpdDockerfile,
    'api/www/index.html': pages.api,
  };
}
