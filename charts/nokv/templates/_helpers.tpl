{{/*
Names. The prefix is cut to 40 characters so that the longest derived name,
"<prefix>-coordinator-headless", stays within the 63 characters a Service
name may have.
*/}}
{{- define "nokv.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{- define "nokv.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nokv.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "nokv.labels" -}}
helm.sh/chart: {{ include "nokv.chart" . }}
{{ include "nokv.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "nokv.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nokv.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nokv.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "nokv.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nokv.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* StatefulSet and Service names of each component. */}}
{{- define "nokv.coordinator.fullname" -}}
{{- printf "%s-coordinator" (include "nokv.fullname" .) }}
{{- end }}

{{- define "nokv.coordinator.headless" -}}
{{- printf "%s-coordinator-headless" (include "nokv.fullname" .) }}
{{- end }}

{{- define "nokv.node.fullname" -}}
{{- printf "%s-node" (include "nokv.fullname" .) }}
{{- end }}

{{- define "nokv.node.headless" -}}
{{- printf "%s-node-headless" (include "nokv.fullname" .) }}
{{- end }}

{{/*
The DNS suffix shared by the pods of one component:
"<headless service>.<namespace>.svc.<clusterDomain>". A pod's stable name is
"<pod>.<suffix>", which stays the same across restarts and rescheduling.
Takes (dict "root" $ "component" "coordinator"|"node").
*/}}
{{- define "nokv.podDomain" -}}
{{- $headless := include (printf "nokv.%s.headless" .component) .root }}
{{- printf "%s.%s.svc.%s" $headless .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{/*
The coordinator members' gRPC addresses, one per StatefulSet pod, as a
comma-separated string (the form of nokv's --coordinator and of
NOKV_COORDINATOR).
*/}}
{{- define "nokv.coordinator.addresses" -}}
{{- $sts := include "nokv.coordinator.fullname" . }}
{{- $domain := include "nokv.podDomain" (dict "root" . "component" "coordinator") }}
{{- $port := int .Values.coordinator.ports.grpc }}
{{- $addresses := list }}
{{- range $i := until (int .Values.coordinator.replicas) }}
{{- $addresses = append $addresses (printf "%s-%d.%s:%d" $sts $i $domain $port) }}
{{- end }}
{{- join "," $addresses }}
{{- end }}

{{/*
Where the TLS Secret is mounted, and the `security` config section pointing
at it (docs/deploy.md, "Security"), with status_tls when tls.statusTls is
on. Keys under coordinator.config.security or node.config.security
(admin_allowed_cn) are merged with these.
*/}}
{{- define "nokv.tlsDir" -}}
/etc/nokv/tls
{{- end }}

{{- define "nokv.security" -}}
{{- $dir := include "nokv.tlsDir" . }}
{{- $security := dict "ca_path" (printf "%s/ca.crt" $dir) "cert_path" (printf "%s/tls.crt" $dir) "key_path" (printf "%s/tls.key" $dir) }}
{{- if .Values.tls.statusTls }}
{{- $_ := set $security "status_tls" true }}
{{- end }}
{{- $security | toYaml }}
{{- end }}

{{/*
Whether the status ports serve HTTPS (tls.statusTls: the process's own
certificate, no client certificate asked for): "true" or "".
*/}}
{{- define "nokv.statusTls" -}}
{{- if and .Values.tls.enabled .Values.tls.statusTls }}true{{ end }}
{{- end }}

{{/*
One coordinator member's config file. The chart owns id, data_dir, listen,
status_listen and members (and security with TLS); coordinator.config
supplies every other key. Takes (dict "root" $ "index" <pod ordinal>).
*/}}
{{- define "nokv.coordinator.config" -}}
{{- $root := .root }}
{{- $values := $root.Values.coordinator }}
{{- $sts := include "nokv.coordinator.fullname" $root }}
{{- $domain := include "nokv.podDomain" (dict "root" $root "component" "coordinator") }}
{{- $members := list }}
{{- range $i := until (int $values.replicas) }}
{{- $host := printf "%s-%d.%s" $sts $i $domain }}
{{- $members = append $members (dict
      "id" (add1 $i)
      "name" (printf "%s-%d" $sts $i)
      "address" (printf "%s:%d" $host (int $values.ports.grpc))
      "status_address" (printf "%s:%d" $host (int $values.ports.status))) }}
{{- end }}
{{- $owned := dict
      "id" (add1 .index)
      "data_dir" "/var/lib/nokv"
      "listen" (printf "0.0.0.0:%d" (int $values.ports.grpc))
      "status_listen" (printf "0.0.0.0:%d" (int $values.ports.status))
      "members" $members }}
{{- if $root.Values.tls.enabled }}
{{- $_ := set $owned "security" (include "nokv.security" $root | fromYaml) }}
{{- end }}
{{- mustMergeOverwrite (deepCopy $values.config) $owned | toYaml }}
{{- end }}

{{/*
The node config file, shared by every node pod (each one adds
--advertise-address with its own DNS name). The chart owns data_dir,
listen, status_listen and coordinators (and security with TLS).
*/}}
{{- define "nokv.node.config" -}}
{{- $values := .Values.node }}
{{- $owned := dict
      "data_dir" "/var/lib/nokv"
      "listen" (printf "0.0.0.0:%d" (int $values.ports.grpc))
      "status_listen" (printf "0.0.0.0:%d" (int $values.ports.status))
      "coordinators" (splitList "," (include "nokv.coordinator.addresses" .)) }}
{{- if .Values.tls.enabled }}
{{- $_ := set $owned "security" (include "nokv.security" . | fromYaml) }}
{{- end }}
{{- mustMergeOverwrite (deepCopy $values.config) $owned | toYaml }}
{{- end }}

{{/*
Pod anti-affinity for one component from its antiAffinity setting, unless
`affinity` is given. Takes (dict "root" $ "component" "coordinator"|"node").
*/}}
{{- define "nokv.affinity" -}}
{{- $values := index .root.Values .component }}
{{- if $values.affinity }}
{{- toYaml $values.affinity }}
{{- else if eq $values.antiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "nokv.selectorLabels" .root | nindent 10 }}
          app.kubernetes.io/component: {{ .component }}
{{- else if eq $values.antiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "nokv.selectorLabels" .root | nindent 12 }}
            app.kubernetes.io/component: {{ .component }}
{{- else if ne $values.antiAffinity "none" }}
{{- fail (printf "%s.antiAffinity must be soft, hard or none (got %q)" .component $values.antiAffinity) }}
{{- end }}
{{- end }}

{{/* Checks on values that would render a cluster that cannot work. */}}
{{- define "nokv.validate" -}}
{{- $c := int .Values.coordinator.replicas }}
{{- if not (has $c (list 1 3 5)) }}
{{- fail (printf "coordinator.replicas must be 1, 3 or 5 (got %d)" $c) }}
{{- end }}
{{- if lt (int .Values.node.replicas) 1 }}
{{- fail "node.replicas must be at least 1" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName: the Secret holding the CA, certificate and key" }}
{{- end }}
{{- if and .Values.tls.statusTls (not .Values.tls.enabled) }}
{{- fail "tls.statusTls needs tls.enabled: the status ports serve HTTPS with the certificate from tls.secretName" }}
{{- end }}
{{- range $component := list "coordinator" "node" }}
{{- $security := (index $.Values $component).config.security }}
{{- if and (kindIs "map" $security) (hasKey $security "status_tls") }}
{{- fail (printf "set tls.statusTls, not %s.config.security.status_tls: the probes and the ServiceMonitor follow tls.statusTls" $component) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The TLS Secret's volume and its mount (used when tls.enabled). */}}
{{- define "nokv.tlsVolume" -}}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    # Group-readable: the pod's fsGroup owns the files, the key stays
    # hidden from other users.
    defaultMode: 0440
    items:
      - key: {{ .Values.tls.caKey }}
        path: ca.crt
      - key: {{ .Values.tls.certKey }}
        path: tls.crt
      - key: {{ .Values.tls.keyKey }}
        path: tls.key
{{- end }}

{{/*
The CLI's TLS settings, so that `kubectl exec <pod> -- nokv ...` presents
the pod's certificate.
*/}}
{{- define "nokv.tlsEnv" -}}
{{- $dir := include "nokv.tlsDir" . }}
- name: NOKV_TLS_CA
  value: {{ printf "%s/ca.crt" $dir | quote }}
- name: NOKV_TLS_CERT
  value: {{ printf "%s/tls.crt" $dir | quote }}
- name: NOKV_TLS_KEY
  value: {{ printf "%s/tls.key" $dir | quote }}
{{- end }}

{{- define "nokv.tlsVolumeMount" -}}
- name: tls
  mountPath: {{ include "nokv.tlsDir" . }}
  readOnly: true
{{- end }}
