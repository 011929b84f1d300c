{{/*
Helpers of the push chart. Every workload template starts with
include "push.validate", so a bad value stops the render with a message
that names the value (helm install/template fail before anything is made).
*/}}

{{- define "push.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-push, or the release name when it already says push. */}}
{{- define "push.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of a component's objects; call with (dict "root" $ "component" "pusher"). */}}
{{- define "push.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "push.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: push
{{- end -}}

{{- define "push.selectorLabels" -}}
app.kubernetes.io/name: {{ include "push.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "push.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}

{{/* The NATS URL list the services get (PUSH_NATS_URL), comma separated. */}}
{{- define "push.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s-nats:4222" .Release.Name -}}
{{- else -}}
{{- join "," .Values.externalNats.urls -}}
{{- end -}}
{{- end -}}

{{- define "push.redisUrl" -}}
{{- if .Values.redis.enabled -}}
{{- printf "redis://%s-redis-master:6379" .Release.Name -}}
{{- else -}}
{{- .Values.externalRedis.url -}}
{{- end -}}
{{- end -}}

{{- define "push.sqlite" -}}
{{- if and (not .Values.store.existingSecret) (hasPrefix "sqlite:" (toString .Values.store.uri)) -}}true{{- end -}}
{{- end -}}

{{/* Every check on the values; renders nothing, or fails naming the value. */}}
{{- define "push.validate" -}}
{{- $v := .Values -}}
{{- if not $v.jwt.existingSecret -}}
{{- fail "jwt.existingSecret is required: the name of an existing Secret holding the HS256 JWT secret under jwt.secretKey (kubectl create secret generic push-jwt --from-literal=jwt-secret=...); the chart never makes one up" -}}
{{- end -}}
{{- if not $v.nats.enabled -}}
{{- if not $v.externalNats.urls -}}
{{- fail "externalNats.urls is empty: give at least one nats:// URL, or set nats.enabled" -}}
{{- end -}}
{{- range $u := $v.externalNats.urls -}}
{{- if not (regexMatch "^(nats|tls)://([^@/\\s,]+@)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$" (toString $u)) -}}
{{- fail (printf "externalNats.urls: %q is not a NATS URL (nats://HOST[:PORT] or tls://HOST[:PORT])" (toString $u)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $v.redis.enabled -}}
{{- if not (regexMatch "^redis://([^@/\\s]*@)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?(/[0-9]+)?$" (toString $v.externalRedis.url)) -}}
{{- fail (printf "externalRedis.url: %q is not a Redis URL (redis://[:PASSWORD@]HOST[:PORT][/DB])" (toString $v.externalRedis.url)) -}}
{{- end -}}
{{- end -}}
{{- if not $v.store.existingSecret -}}
{{- if not (regexMatch "^(sqlite:.+|mongodb(\\+srv)?://.+)$" (toString $v.store.uri)) -}}
{{- fail (printf "store.uri: %q is neither sqlite:PATH nor mongodb://..." (toString $v.store.uri)) -}}
{{- end -}}
{{- end -}}
{{- if and (include "push.sqlite" .) (gt (int $v.collector.replicas) 1) -}}
{{- fail (printf "collector.replicas is %d but store.uri is %s: SQLite allows one collector (on one volume); use a mongodb:// store for more" (int $v.collector.replicas) $v.store.uri) -}}
{{- end -}}
{{- if lt (int $v.collector.replicas) 1 -}}
{{- fail "collector.replicas must be at least 1: nothing is accepted without a collector" -}}
{{- end -}}
{{- if lt (int $v.pusher.replicas) 1 -}}
{{- fail (printf "pusher.replicas is %d: at least one pusher is needed, or no client can connect" (int $v.pusher.replicas)) -}}
{{- end -}}
{{- if and $v.pusher.autoscaling.enabled (lt (int $v.pusher.autoscaling.minReplicas) 1) -}}
{{- fail "pusher.autoscaling.minReplicas must be at least 1" -}}
{{- end -}}
{{- if or (lt (int $v.authd.replicas) 1) (lt (int $v.dispatcher.replicas) 1) -}}
{{- fail "authd.replicas and dispatcher.replicas must be at least 1" -}}
{{- end -}}
{{- if or (lt (int $v.streamReplicas) 1) (gt (int $v.streamReplicas) 5) -}}
{{- fail (printf "streamReplicas is %d: JetStream keeps 1 to 5 replicas" (int $v.streamReplicas)) -}}
{{- end -}}
{{- if not (has $v.logFormat (list "text" "json")) -}}
{{- fail (printf "logFormat: %q is neither text nor json" (toString $v.logFormat)) -}}
{{- end -}}
{{- if not (has $v.logLevel (list "debug" "info" "warn" "error")) -}}
{{- fail (printf "logLevel: %q is not one of debug, info, warn, error" (toString $v.logLevel)) -}}
{{- end -}}
{{- end -}}

{{/* Environment every service reads (the contract's common flags). */}}
{{- define "push.env" -}}
- name: PUSH_NATS_URL
  value: {{ include "push.natsUrl" . | quote }}
- name: PUSH_PREFIX
  value: {{ .Values.prefix | quote }}
- name: PUSH_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: PUSH_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: PUSH_METRICS
  value: {{ printf "0.0.0.0:%d" (int .Values.metrics.port) | quote }}
{{- end -}}

{{- define "push.redisEnv" -}}
- name: PUSH_REDIS_URL
  value: {{ include "push.redisUrl" . | quote }}
{{- end -}}

{{- define "push.jwtEnv" -}}
- name: PUSH_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.jwt.existingSecret }}
      key: {{ .Values.jwt.secretKey }}
{{- end -}}

{{/* The metrics port and the probes on it: /healthz while the process
lives, /readyz while its NATS (and Redis or store) connections are up. */}}
{{- define "push.metricsPort" -}}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end -}}

{{- define "push.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: metrics
  periodSeconds: 10
  timeoutSeconds: 2
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: metrics
  periodSeconds: 5
  timeoutSeconds: 2
  failureThreshold: 2
{{- end -}}

{{- define "push.podAnnotations" -}}
{{- if .Values.metrics.prometheusAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{/* Pod spec parts every workload shares; call with (dict "root" $ "c" .Values.<component>). */}}
{{- define "push.podCommon" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
