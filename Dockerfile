# Switchboard: one process on an embedded SQLite file in /app/data.
# Build: docker build -t switchboard .   Run: docker run -p 8882:8882 -v sbdata:/app/data switchboard

FROM oven/bun:1.4.4 AS deps
WORKDIR /app
COPY package.json bun.lock bunfig.toml ./
# Production dependencies only, exactly as locked. No install scripts: bun (a devDependency) is
# not installed here, and the others (baileys' engine check, protobufjs) are not needed at runtime.
RUN bun install --production --frozen-lockfile --ignore-scripts

FROM oven/bun:1.4.4
WORKDIR /app
ENV NODE_ENV=production \
    PORT=8882 \
    HOST=0.0.0.0 \
    DATABASE_PATH=/app/data/switchboard.db
COPY --from=deps /app/node_modules ./node_modules
COPY package.json bun.lock bunfig.toml tsconfig.json ./
COPY src ./src
COPY actors ./actors
COPY db ./db
# The image's unprivileged "bun" user owns only the data directory.
RUN mkdir -p /app/data && chown bun:bun /app/data
USER bun
VOLUME ["/app/data"]
EXPOSE 8882
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["bun", "-e", "const r = await fetch('http://127.0.0.1:' + (process.env.PORT || 8882) + '/health').catch(() => null); process.exit(r && r.ok ? 0 : 1)"]
CMD ["bun", "src/main.ts"]
