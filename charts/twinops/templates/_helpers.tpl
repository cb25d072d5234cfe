{{- define "twinops.labels" -}}
app.kubernetes.io/part-of: twinops
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* A twinops image: "<registry>/twinops-<family>:<tag>" (images/<family>/Dockerfile). */}}
{{- define "twinops.image" -}}
{{- $root := index . 0 -}}
{{- printf "%s/twinops-%s:%s" (trimSuffix "/" $root.Values.images.registry) (index . 1) ($root.Values.images.tag | toString) -}}
{{- end -}}

{{/* The "restricted" Pod Security Standard, pod level; argument: the uid/gid. */}}
{{- define "twinops.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: {{ . }}
  runAsGroup: {{ . }}
  fsGroup: {{ . }}
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* The "restricted" Pod Security Standard, container level, with a read-only root filesystem. */}}
{{- define "twinops.containerSecurityContext" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
{{- end -}}

{{/* The drift detector every predictor logs to (its Service comes with the monitoring issue). */}}
{{- define "twinops.driftUrl" -}}
{{- .Values.serving.driftUrl | default (printf "http://twinops-drift.%s/" .Release.Namespace) -}}
{{- end -}}
