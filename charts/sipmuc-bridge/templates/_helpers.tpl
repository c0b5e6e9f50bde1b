{{/* Names ---------------------------------------------------------------------------------- */}}
{{- define "sipmuc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sipmuc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sipmuc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sipmuc.labels" -}}
app.kubernetes.io/name: {{ include "sipmuc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "sipmuc.commonLabels" . }}
{{- end }}

{{/* Labels that never select: what pod templates add to their selector labels. */}}
{{- define "sipmuc.commonLabels" -}}
helm.sh/chart: {{ include "sipmuc.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sipmuc-bridge
{{- end }}

{{/* Selector of the bridge pods (never of Redis or Kamailio). */}}
{{- define "sipmuc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sipmuc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bridge
{{- end }}

{{- define "sipmuc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sipmuc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images ---------------------------------------------------------------------------------- */}}
{{- define "sipmuc.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "sipmuc.kamailioImage" -}}
{{- $repo := default .Values.image.repository .Values.kamailio.image.repository }}
{{- $tag := default (printf "%s-kamailio" .Chart.AppVersion) .Values.kamailio.image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/* Secrets --------------------------------------------------------------------------------- */}}
{{- define "sipmuc.secretName" -}}
{{- printf "%s-secrets" (include "sipmuc.fullname" .) }}
{{- end }}

{{- define "sipmuc.tlsSecretName" -}}
{{- default (printf "%s-sip-tls" (include "sipmuc.fullname" .)) .Values.sip.tls.existingSecret }}
{{- end }}

{{- define "sipmuc.tlsEnabled" -}}
{{- if or .Values.sip.tls.existingSecret .Values.sip.tls.certificate }}true{{ end }}
{{- end }}

{{/*
A value kept across upgrades: the one given in values, else the one already in the release's
Secret (lookup; empty when rendering offline), else a new random one.
*/}}
{{- define "sipmuc.keptSecret" -}}
{{- $ctx := index . 0 }}{{ $key := index . 1 }}{{ $given := index . 2 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace (include "sipmuc.secretName" $ctx) }}
{{- if and $existing (index ($existing.data | default dict) $key) }}
{{- index $existing.data $key | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sipmuc.redisHost" -}}
{{- printf "%s-redis.%s.svc" (include "sipmuc.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Exposure -------------------------------------------------------------------------------- */}}
{{- define "sipmuc.hostNetwork" -}}
{{- if eq .Values.sip.exposure.mode "hostNetwork" }}true{{ end }}
{{- end }}

{{/* The bridge's SIP listener ports as Service/container ports (name, port, protocol). */}}
{{- define "sipmuc.sipPorts" -}}
{{- $transports := .Values.sip.transports }}
{{- if has "udp" $transports }}
- {name: sip-udp, port: {{ .Values.sip.port }}, protocol: UDP}
{{- end }}
{{- if has "tcp" $transports }}
- {name: sip-tcp, port: {{ .Values.sip.port }}, protocol: TCP}
{{- end }}
{{- if has "tls" $transports }}
- {name: sip-tls, port: {{ .Values.sip.tlsPort }}, protocol: TCP}
{{- end }}
{{- if .Values.workers.basePort }}
{{- range $i := until (int .Values.workers.poolSize) }}
{{- $port := add $.Values.workers.basePort (mul 2 $i) }}
{{- if has "udp" $transports }}
- {name: w{{ add $i 1 }}-udp, port: {{ $port }}, protocol: UDP}
{{- end }}
{{- if has "tcp" $transports }}
- {name: w{{ add $i 1 }}-tcp, port: {{ $port }}, protocol: TCP}
{{- end }}
{{- if has "tls" $transports }}
- {name: w{{ add $i 1 }}-tls, port: {{ add $port 1 }}, protocol: TCP}
{{- end }}
{{- end }}
{{- end }}
{{- range .Values.sip.exposure.extraPorts }}
- {name: {{ .name }}, port: {{ .port }}, protocol: {{ .protocol | default "UDP" }}}
{{- end }}
{{- end }}

{{/* Refuse combinations that would deploy a bridge that cannot work. */}}
{{- define "sipmuc.validate" -}}
{{- $mode := .Values.sip.exposure.mode }}
{{- $rtpEnd := add .Values.sip.rtp.portStart .Values.sip.rtp.portCount -1 }}
{{- if and (has "tls" .Values.sip.transports) (not (include "sipmuc.tlsEnabled" .)) }}
{{- fail "sip.transports has tls: set sip.tls.existingSecret (a kubernetes.io/tls Secret) or sip.tls.certificate and sip.tls.privateKey" }}
{{- end }}
{{- if and .Values.sip.tls.certificate (not .Values.sip.tls.privateKey) }}
{{- fail "sip.tls.certificate needs sip.tls.privateKey" }}
{{- end }}
{{- if and (eq .Values.redis.mode "embedded") (gt (int .Values.replicaCount) 1) }}
{{- fail "redis.mode=embedded keeps state inside one pod: it needs replicaCount=1 (use internal, external or sentinel for replicas)" }}
{{- end }}
{{- if eq .Values.redis.mode "sentinel" }}
{{- fail "redis.mode=sentinel: the bridge has no Sentinel client yet (bridge/state only takes redis://, rediss:// or unix:// URLs). Use redis.mode=external with the URL of a Sentinel-aware proxy (e.g. HAProxy) or of the current master" }}
{{- end }}
{{- if and (eq .Values.redis.mode "external") (not (or .Values.redis.external.url .Values.redis.external.existingSecret)) }}
{{- fail "redis.mode=external needs redis.external.url or redis.external.existingSecret" }}
{{- end }}
{{- if eq $mode "nodePort" }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "sip.exposure.mode=nodePort exposes one fixed set of node ports: it needs replicaCount=1 (use hostNetwork or loadBalancer for replicas)" }}
{{- end }}
{{- $low := int .Values.sip.exposure.nodePortRange.start }}{{ $high := int .Values.sip.exposure.nodePortRange.end }}
{{- $ports := list (int .Values.sip.port) (int .Values.sip.tlsPort) (int .Values.sip.rtp.portStart) (int $rtpEnd) }}
{{- if .Values.workers.basePort }}
{{- $ports = concat $ports (list (int .Values.workers.basePort) (int (add .Values.workers.basePort (mul 2 .Values.workers.poolSize) -1))) }}
{{- end }}
{{- range $port := $ports }}
{{- if or (lt $port $low) (gt $port $high) }}
{{- fail (printf "sip.exposure.mode=nodePort: port %d is outside the node-port range %d-%d; the bridge must listen on the very port it is reached on, so set sip.port, sip.tlsPort, workers.basePort and sip.rtp.* inside that range" $port $low $high) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (has $mode (list "nodePort" "loadBalancer")) (gt (int .Values.sip.rtp.portCount) (int .Values.sip.exposure.maxRtpServicePorts)) }}
{{- fail (printf "sip.exposure.mode=%s lists every RTP port in a Service: sip.rtp.portCount=%d exceeds sip.exposure.maxRtpServicePorts=%d (lower the range or use hostNetwork)" $mode (int .Values.sip.rtp.portCount) (int .Values.sip.exposure.maxRtpServicePorts)) }}
{{- end }}
{{- end }}
