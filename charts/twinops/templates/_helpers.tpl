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


{{/* An init container that waits, saying what for, until what the pod needs is there: files on
the twinops-home volume (the models Job writes them) and Services that accept connections.
Argument: dict root, image (a twinops image family), files, services (space-separated; "" = none),
home (mount the volume). The script is files/wait-for.sh (kustomize carries the same text). */}}
{{- define "twinops.waitFor" -}}
- name: wait-for
  image: {{ include "twinops.image" (list .root .image) }}
  command:
    - sh
    - -c
    - |
      {{- .root.Files.Get "files/wait-for.sh" | trimSuffix "\n" | nindent 6 }}
  env:
    {{- with .files }}
    - {name: WAIT_FOR_FILES, value: {{ . | quote }}}
    {{- end }}
    {{- with .services }}
    - {name: WAIT_FOR_SERVICES, value: {{ . | quote }}}
    {{- end }}
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {cpu: 200m, memory: 64Mi}
  {{- include "twinops.containerSecurityContext" . | nindent 2 }}
  {{- if .home }}
  volumeMounts:
    - name: home
      mountPath: {{ .root.Values.settings.TWINOPS_HOME }}
      readOnly: true
  {{- end }}
{{- end -}}

{{/* A model the twinops-models Job caches on the volume: its config.json, the last file it moves
into place (argument: root, bundled name). */}}
{{- define "twinops.cachedModel" -}}
{{- printf "%s/models/%s/config.json" (index . 0).Values.settings.TWINOPS_HOME (index . 1) -}}
{{- end -}}


{{/* On a ReadWriteOnce twinops-home (homePvc.colocate), the pods that mount it share a node: a
label, and a required affinity to the pods that carry it. */}}
{{- define "twinops.homeLabel" -}}
{{- if .Values.homePvc.colocate }}
twinops.io/home-volume: {{ .Values.homePvc.name }}
{{- end }}
{{- end -}}

{{- define "twinops.homeAffinity" -}}
{{- if .Values.homePvc.colocate }}
affinity:
  podAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector:
          matchLabels: {twinops.io/home-volume: {{ .Values.homePvc.name }}}
        topologyKey: kubernetes.io/hostname
{{- end }}
{{- end -}}
