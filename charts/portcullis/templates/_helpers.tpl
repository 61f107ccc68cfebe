{{/*
Helpers shared by the templates. The object names and labels are deploy/'s: the controller's
defaults (--authd-service, the config Secret, the Lease) name these objects, and `helm template`
with default values must yield what `kubectl kustomize deploy/` does (e2e/tests/test_chart.py).
*/}}

{{/* The labels of every object of a component: portcullis.labels "portcullis-authd" */}}
{{- define "portcullis.labels" -}}
app.kubernetes.io/name: {{ . }}
app.kubernetes.io/part-of: portcullis
{{- end }}

{{/* The image of a component: portcullis.image (dict "c" .Values.authd "root" $) */}}
{{- define "portcullis.image" -}}
{{ .c.image.repository }}:{{ .c.image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{/*
The pod template's metadata: deploy/'s labels plus podLabels, and podAnnotations.
portcullis.podMetadata (dict "name" "portcullis-authd" "c" .Values.authd)
*/}}
{{- define "portcullis.podMetadata" -}}
{{- with .c.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
labels:
  {{- include "portcullis.labels" .name | nindent 2 }}
  {{- with .c.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
Where the pods run: imagePullSecrets, priorityClassName, nodeSelector, tolerations,
topologySpreadConstraints and affinity (the soft or hard spread over nodes of deploy/ unless
affinity is given). portcullis.scheduling (dict "name" "portcullis-authd" "c" .Values.authd
"root" $)
*/}}
{{- define "portcullis.scheduling" -}}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .c.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .c.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- tpl (toYaml .) $.root | nindent 2 }}
{{- end }}
{{- if .c.affinity }}
affinity:
  {{- toYaml .c.affinity | nindent 2 }}
{{- else if eq .c.podAntiAffinity "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              app.kubernetes.io/name: {{ .name }}
{{- else if eq .c.podAntiAffinity "hard" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            app.kubernetes.io/name: {{ .name }}
{{- end }}
{{- end }}

{{/* A PodDisruptionBudget: portcullis.pdb (dict "name" "portcullis-authd" "c" .Values.authd
"root" $) */}}
{{- define "portcullis.pdb" -}}
{{- if .c.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "portcullis.labels" .name | nindent 4 }}
spec:
  {{- if kindIs "invalid" .c.podDisruptionBudget.maxUnavailable }}
  minAvailable: {{ .c.podDisruptionBudget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .c.podDisruptionBudget.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ .name }}
{{- end }}
{{- end }}

{{/* The cookie Secret authd mounts. */}}
{{- define "portcullis.cookieSecretName" -}}
{{ .Values.cookieSecret.existingSecret | default "portcullis-cookie-secret" }}
{{- end }}
