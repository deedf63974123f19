# syntax=docker/dockerfile:1
# cosi-stream: cosi-server, cosi-fetch and cosi-pack in one image.
#   docker build -t cosi-stream .
#   docker run --rm -p 8080:8080 -v "$PWD/catalog:/catalog:ro" cosi-stream

# Build: TypeScript needs the devDependencies, which the runtime never sees.
FROM node:22-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off here: `prepare` would build before the sources are copied.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY shared ./shared
COPY server ./server
COPY client ./client
RUN npm run build

# Runtime: production dependencies and the compiled JavaScript only.
FROM node:22-slim
# resize2fs for `cosi-fetch --grow`; blockdev (util-linux) is in the base image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends e2fsprogs \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
COPY patches ./patches
# Scripts stay off (no build here), but the fzstd fix in patches/ must be applied.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && npx --no-install patch-package \
 && npm cache clean --force
COPY --from=build /app/dist/shared ./dist/shared
COPY --from=build /app/dist/server ./dist/server
COPY --from=build /app/dist/client ./dist/client
# Wrappers rather than symlinks: they work whatever the exec bits and
# shebangs of the compiled files, and need no `npm link`.
RUN for pair in cosi-server:dist/server/cli.js cosi-fetch:dist/client/cli.js cosi-pack:dist/shared/pack/cli.js; do \
      name=${pair%%:*}; target=/app/${pair#*:}; \
      printf '#!/bin/sh\nexec node %s "$@"\n' "$target" > "/usr/local/bin/$name"; \
      chmod 755 "/usr/local/bin/$name"; \
    done \
 && mkdir -p /catalog /out \
 && chown node:node /out
# The `node` user (uid 1000) of the base image. Writing to a block device
# (cosi-fetch --disk -o /dev/sdX) needs `--user root --device /dev/sdX`.
USER node
EXPOSE 8080
# No curl in slim images: Node 22's fetch does the probe. Follows --port below.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["cosi-server", "--root", "/catalog", "--host", "0.0.0.0", "--port", "8080"]
