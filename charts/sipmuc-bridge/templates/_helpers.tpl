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
A secret value the chart keeps in its own Secret: the one given in values, else (secrets.generate)
the one already in the release's Secret (Helm lookup; empty when rendering offline), else a new
random one. Without secrets.generate a missing value fails the render: an offline render (helm
template, GitOps) would otherwise invent a new secret every time. Args: (list ctx key given what).
*/}}
{{- define "sipmuc.keptSecret" -}}
{{- $ctx := index . 0 }}{{ $key := index . 1 }}{{ $given := index . 2 }}{{ $what := index . 3 }}
{{- if $given }}
{{- $given }}
{{- else if $ctx.Values.secrets.generate }}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace (include "sipmuc.secretName" $ctx) }}
{{- if and $existing (index ($existing.data | default dict) $key) }}
{{- index $existing.data $key | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- else }}
{{- fail (printf "%s is not set. Give it in values, name a Secret you manage (see values.yaml), or set secrets.generate=true to have Helm generate it and read it back at each upgrade (helm install/upgrade only: offline renders such as helm template or Argo CD would make a new one every time)" $what) }}
{{- end }}
{{- end }}

{{/*
Where each secret comes from: a dict name -> {secret, key}, for the projected volume mounted at
/etc/sipmuc/secrets (file name = name) and the SIPMUC_*_FILE settings.
*/}}
{{- define "sipmuc.secretFiles" -}}
{{- $own := include "sipmuc.secretName" . }}
{{- $files := dict }}
{{- $x := .Values.xmpp }}
{{- if $x.existingSecret }}
{{- $_ := set $files "component-secret" (dict "secret" $x.existingSecret "key" $x.existingSecretKeys.secret) }}
{{- $_ := set $files "puppet-key" (dict "secret" $x.existingSecret "key" $x.existingSecretKeys.puppetKey) }}
{{- else }}
{{- $_ := set $files "component-secret" (dict "secret" $own "key" "component-secret") }}
{{- $_ := set $files "puppet-key" (dict "secret" $own "key" "puppet-key") }}
{{- end }}
{{- $r := .Values.redis }}
{{- if eq $r.mode "internal" }}
{{- $_ := set $files "redis-password" (dict "secret" (default $own $r.internal.existingSecret) "key" (ternary $r.internal.existingSecretKey "redis-password" (ne $r.internal.existingSecret ""))) }}
{{- else if eq $r.mode "external" }}
{{- $_ := set $files "redis-url" (dict "secret" (default $own $r.external.existingSecret) "key" (ternary $r.external.existingSecretKey "redis-url" (ne $r.external.existingSecret ""))) }}
{{- else if eq $r.mode "sentinel" }}
{{- if $r.sentinel.existingSecret }}
{{- $_ := set $files "redis-password" (dict "secret" $r.sentinel.existingSecret "key" $r.sentinel.existingSecretKey) }}
{{- if $r.sentinel.sentinelPasswordKey }}
{{- $_ := set $files "sentinel-password" (dict "secret" $r.sentinel.existingSecret "key" $r.sentinel.sentinelPasswordKey) }}
{{- end }}
{{- else if $r.sentinel.password }}
{{- $_ := set $files "redis-password" (dict "secret" $own "key" "redis-password") }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{- define "sipmuc.redisHost" -}}
{{- printf "%s-redis.%s.svc" (include "sipmuc.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Exposure -------------------------------------------------------------------------------- */}}
{{- define "sipmuc.hostNetwork" -}}
{{- if eq .Values.sip.exposure.mode "hostNetwork" }}true{{ end }}
{{- end }}

{{/*
What the pods advertise (SIPMUC_SIP__ADVERTISE_HOST), as an env value that Kubernetes expands;
empty when each pod gets its own address from SIPMUC_SIP__ADVERTISE_BY_NODE (loadBalancerIPs).
*/}}
{{- define "sipmuc.advertise" -}}
{{- $mode := .Values.sip.exposure.mode }}
{{- if .Values.sip.advertiseAddress }}
{{- .Values.sip.advertiseAddress }}
{{- else if has $mode (list "hostNetwork" "nodePort") }}
{{- print "$(NODE_IP)" }}
{{- else if eq $mode "clusterIP" }}
{{- print "$(POD_IP)" }}
{{- end }}
{{- end }}

{{/* loadBalancer mode without advertiseAddress: pod name -> its Service's address. */}}
{{- define "sipmuc.advertiseByNode" -}}
{{- $byNode := dict }}
{{- if and (eq .Values.sip.exposure.mode "loadBalancer") (not .Values.sip.advertiseAddress) }}
{{- range $ordinal, $ip := .Values.sip.exposure.service.loadBalancerIPs }}
{{- $_ := set $byNode (printf "%s-%d" (include "sipmuc.fullname" $) $ordinal) $ip }}
{{- end }}
{{- end }}
{{- if $byNode }}{{ toJson $byNode }}{{ end }}
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
{{- /* worker 0 is the front on sip.port; workers 1.. listen on basePort + 2(i-1) */}}
{{- range $i := until (sub (int .Values.workers.poolSize) 1 | int) }}
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
{{- if and (eq .Values.redis.mode "sentinel") (not .Values.redis.sentinel.hosts) }}
{{- fail "redis.mode=sentinel needs redis.sentinel.hosts: the Sentinels' host:port addresses" }}
{{- end }}
{{- if and (eq .Values.redis.mode "sentinel") (not (or .Values.redis.sentinel.password .Values.redis.sentinel.existingSecret)) }}
{{- fail "redis.mode=sentinel needs the data servers' password: redis.sentinel.password or redis.sentinel.existingSecret (Redis that other pods reach must ask for one)" }}
{{- end }}
{{- if and (eq $mode "loadBalancer") (not .Values.sip.advertiseAddress) (lt (len .Values.sip.exposure.service.loadBalancerIPs) (int .Values.replicaCount)) }}
{{- fail (printf "sip.exposure.mode=loadBalancer: the chart cannot know the address each pod's load balancer gets, which callers must be told (SIP Contact, SDP c=, 302). Set sip.advertiseAddress (it may use $(POD_NAME), e.g. \"$(POD_NAME).sip.example.org\" published by external-dns) or one sip.exposure.service.loadBalancerIPs entry per replica (%d given, replicaCount=%d)" (len .Values.sip.exposure.service.loadBalancerIPs) (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.networkPolicy.enabled (eq $mode "hostNetwork") (eq .Values.redis.mode "internal") (not .Values.networkPolicy.nodeCidrs) }}
{{- fail "networkPolicy.enabled with sip.exposure.mode=hostNetwork: the bridge reaches the in-chart Redis from its node's address, which a pod selector cannot match; set networkPolicy.nodeCidrs to the CIDRs of the nodes' addresses" }}
{{- end }}
{{- if and .Values.realtime.enabled (ne (int .Values.podSecurityContext.runAsUser) 10001) }}
{{- fail "realtime.enabled switches from root to uid 10001 with setpriv: keep podSecurityContext.runAsUser at 10001 (the image's user) or disable realtime" }}
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
{{- if gt (int .Values.workers.poolSize) 1 }}
{{- $ports = concat $ports (list (int .Values.workers.basePort) (int (add .Values.workers.basePort (mul 2 (sub .Values.workers.poolSize 1)) -1))) }}
{{- end }}
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
