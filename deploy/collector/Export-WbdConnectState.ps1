<#
.SYNOPSIS
    Exports the Entra Connect Sync server state that Writeback Doctor diagnoses, as JSON.

.DESCRIPTION
    Run it on the Entra Connect Sync server, in an elevated Windows PowerShell 5.1 (or
    PowerShell 7) session, as an account that may use the ADSync module (a member of the local
    ADSyncAdmins group, or a local administrator):

        powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\Export-WbdConnectState.ps1 -Path C:\wbd\connect-state.json

    Then copy the file to the machine where wbd-collector runs and set, in its configuration,

        [probes.connect_server]
        export_file = "C:\\wbd\\connect-state.json"

    The collector on the Connect server itself runs this same script (it is built into the
    binary) and needs no export.

    The script only reads: Get-* cmdlets of the ADSync module (connectors, run history,
    connector statistics, scheduler, global settings), Get-ADSyncServerConfiguration into a
    temporary folder (deleted afterwards; each AD connector's partition configuration is passed
    on), the registry and the service manager. It never
    prompts; a cmdlet that fails or does not exist in this Connect version is recorded in
    "errors" and the rest of the export goes on. Without -Path the JSON is written to stdout.

    Format: schema "wbd-connect-state/1" (see collector/README.md). Dates are ISO 8601 UTC.

.PARAMETER Path
    Where to write the JSON (UTF-8). Omit to write to stdout.

.PARAMETER RunHistory
    How many recent runs to read per connector (default 50).
#>
[CmdletBinding()]
param(
    [string] $Path,
    [int] $RunHistory = 50
)

Set-StrictMode -Version 2.0
$ErrorActionPreference = 'Stop'
$errors = New-Object System.Collections.ArrayList

function Invoke-Step([string] $What, [scriptblock] $Block) {
    try { & $Block } catch { [void] $errors.Add("${What}: $($_.Exception.Message)"); $null }
}

function ConvertTo-Iso($Value) {
    if ($null -eq $Value) { return $null }
    try { return ([datetime] $Value).ToUniversalTime().ToString('yyyy-MM-ddTHH:mm:ss.fffZ') } catch { return $null }
}

function Get-Prop($Object, [string] $Name) {
    if ($null -eq $Object) { return $null }
    $p = $Object.PSObject.Properties[$Name]
    if ($null -eq $p) { return $null }
    return $p.Value
}

# A DWORD or string registry value: {state: set, value} or {state: absent}.
function Get-RegValue([string] $Key, [string] $Name) {
    $item = Get-Item -LiteralPath $Key -ErrorAction SilentlyContinue
    if ($null -eq $item) { return @{ state = 'absent' } }
    $value = $item.GetValue($Name, $null)
    if ($null -eq $value) { return @{ state = 'absent' } }
    if ($value -is [int] -or $value -is [long]) { return @{ state = 'set'; value = [int64] ([uint32] ($value -band 0xFFFFFFFF)) } }
    return @{ state = 'set'; value = [string] $value }
}

$state = [ordered] @{
    schema       = 'wbd-connect-state/1'
    exportedAt   = ConvertTo-Iso (Get-Date)
    computerName = $env:COMPUTERNAME
}

$state.os = Invoke-Step 'Win32_OperatingSystem' {
    $os = Get-CimInstance -ClassName Win32_OperatingSystem
    [ordered] @{ caption = $os.Caption; buildNumber = [string] $os.BuildNumber }
}

# --- services and version -----------------------------------------------------------------
$state.adsyncService = Invoke-Step 'Get-Service ADSync' {
    $svc = Get-Service -Name ADSync -ErrorAction SilentlyContinue
    if ($null -eq $svc) { [ordered] @{ status = 'NotInstalled'; startType = $null } }
    else { [ordered] @{ status = $svc.Status.ToString(); startType = $svc.StartType.ToString() } }
}

$state.connectVersion = Invoke-Step 'miiserver.exe version' {
    $image = (Get-ItemProperty -LiteralPath 'HKLM:\SYSTEM\CurrentControlSet\Services\ADSync').ImagePath
    $exe = $image.Trim('"')
    if ($exe -match '^(.*?\.exe)') { $exe = $Matches[1].Trim('"') }
    (Get-Item -LiteralPath $exe).VersionInfo.ProductVersion
}

$state.cloudSyncAgent = Invoke-Step 'cloud sync agent' {
    $svc = Get-Service -Name AADConnectProvisioningAgent -ErrorAction SilentlyContinue
    if ($null -eq $svc) { [ordered] @{ installed = $false; version = $null; service = $null } }
    else {
        $exe = Join-Path $env:ProgramFiles 'Microsoft Azure AD Connect Provisioning Agent\AADConnectProvisioningAgent.exe'
        $version = if (Test-Path -LiteralPath $exe) { (Get-Item -LiteralPath $exe).VersionInfo.ProductVersion } else { $null }
        [ordered] @{ installed = $true; version = $version; service = [ordered] @{ status = $svc.Status.ToString(); startType = $svc.StartType.ToString() } }
    }
}

# --- registry -----------------------------------------------------------------------------
$schannel = 'HKLM:\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL\Protocols\TLS 1.2'
$state.registry = [ordered] @{
    netFrameworkRelease = Get-RegValue 'HKLM:\SOFTWARE\Microsoft\NET Framework Setup\NDP\v4\Full' 'Release'
    restrictRemoteSam   = Get-RegValue 'HKLM:\SYSTEM\CurrentControlSet\Control\Lsa' 'RestrictRemoteSam'
    tls12               = [ordered] @{
        dotnet64SystemDefaultTlsVersions = Get-RegValue 'HKLM:\SOFTWARE\Microsoft\.NETFramework\v4.0.30319' 'SystemDefaultTlsVersions'
        dotnet64SchUseStrongCrypto       = Get-RegValue 'HKLM:\SOFTWARE\Microsoft\.NETFramework\v4.0.30319' 'SchUseStrongCrypto'
        dotnet32SystemDefaultTlsVersions = Get-RegValue 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\.NETFramework\v4.0.30319' 'SystemDefaultTlsVersions'
        dotnet32SchUseStrongCrypto       = Get-RegValue 'HKLM:\SOFTWARE\WOW6432Node\Microsoft\.NETFramework\v4.0.30319' 'SchUseStrongCrypto'
        serverEnabled                    = Get-RegValue "$schannel\Server" 'Enabled'
        serverDisabledByDefault          = Get-RegValue "$schannel\Server" 'DisabledByDefault'
        clientEnabled                    = Get-RegValue "$schannel\Client" 'Enabled'
        clientDisabledByDefault          = Get-RegValue "$schannel\Client" 'DisabledByDefault'
    }
}

# --- the sync engine (ADSync module) ------------------------------------------------------
$adsync = Invoke-Step 'Import-Module ADSync' { Import-Module ADSync -ErrorAction Stop; $true }
if ($adsync) {
    $state.scheduler = Invoke-Step 'Get-ADSyncScheduler' {
        $s = Get-ADSyncScheduler
        [ordered] @{
            syncCycleEnabled                    = Get-Prop $s 'SyncCycleEnabled'
            schedulerSuspended                  = Get-Prop $s 'SchedulerSuspended'
            stagingModeEnabled                  = Get-Prop $s 'StagingModeEnabled'
            maintenanceEnabled                  = Get-Prop $s 'MaintenanceEnabled'
            syncCycleInProgress                 = Get-Prop $s 'SyncCycleInProgress'
            nextSyncCycleStartTimeInUTC         = ConvertTo-Iso ([datetime]::SpecifyKind((Get-Prop $s 'NextSyncCycleStartTimeInUTC'), 'Utc'))
            currentlyEffectiveSyncCycleInterval = [string] (Get-Prop $s 'CurrentlyEffectiveSyncCycleInterval')
        }
    }

    $state.globalSettings = Invoke-Step 'Get-ADSyncGlobalSettings' {
        $g = [ordered] @{}
        foreach ($p in (Get-ADSyncGlobalSettings).Parameters) { $g[$p.Name] = [string] $p.Value }
        $g
    }

    $state.autoUpgrade = Invoke-Step 'Get-ADSyncAutoUpgrade' { [string] (Get-ADSyncAutoUpgrade) }

    # The exported server configuration holds each AD connector's partition configuration: the
    # selected partitions with their container filter (inclusions, exclusions), preferred DCs,
    # "Only use preferred domain controllers" (dc-failover = 0), the DC last used and LDAP
    # options. The <ma-partition-data> element is passed on (maPartitionData, without the DirSync
    # cookies) and read by the collector; preferredDcs, lastDc and signAndSeal are still written
    # for collectors that predate it.
    $partitionData = @{}
    Invoke-Step 'Get-ADSyncServerConfiguration' {
        $tmp = Join-Path ([IO.Path]::GetTempPath()) ("wbd-connect-" + [guid]::NewGuid())
        try {
            Get-ADSyncServerConfiguration -Path $tmp | Out-Null
            foreach ($file in Get-ChildItem -LiteralPath (Join-Path $tmp 'Connectors') -Filter '*.xml' -ErrorAction SilentlyContinue) {
                [xml] $xml = Get-Content -LiteralPath $file.FullName -Raw
                $ma = $xml.SelectSingleNode('//ma-data')
                if ($null -eq $ma) { continue }
                $name = $ma.SelectSingleNode('name').InnerText
                $dcs = New-Object System.Collections.ArrayList
                $last = $null; $seal = $null
                foreach ($part in $ma.SelectNodes("ma-partition-data/partition[selected = '1']")) {
                    foreach ($dc in $part.SelectNodes('custom-data/adma-partition-data/preferred-dcs/preferred-dc')) { [void] $dcs.Add($dc.InnerText) }
                    $node = $part.SelectSingleNode('custom-data/adma-partition-data/last-dc'); if ($node) { $last = $node.InnerText }
                    $node = $part.SelectSingleNode('custom-data/adma-partition-data/sign-and-seal'); if ($node) { $seal = ($node.InnerText -eq '1') }
                }
                $raw = $ma.SelectSingleNode('ma-partition-data')
                if ($raw) {
                    # The DirSync watermarks (cookie) are large and say nothing the collector reads.
                    $raw = $raw.CloneNode($true)
                    foreach ($cookie in @($raw.SelectNodes('.//cookie'))) { [void] $cookie.ParentNode.RemoveChild($cookie) }
                }
                $partitionData[$name] = @{
                    preferredDcs    = @($dcs); lastDc = $last; signAndSeal = $seal
                    maPartitionData = if ($raw) { $raw.OuterXml } else { $null }
                }
            }
        } finally {
            Remove-Item -LiteralPath $tmp -Recurse -Force -ErrorAction SilentlyContinue
        }
    } | Out-Null

    $connectors = New-Object System.Collections.ArrayList
    foreach ($c in @(Invoke-Step 'Get-ADSyncConnector' { Get-ADSyncConnector })) {
        if ($null -eq $c) { continue }
        $entry = [ordered] @{
            name              = $c.Name
            identifier        = [string] $c.Identifier
            connectorTypeName = [string] (Get-Prop $c 'ConnectorTypeName')
            subType           = [string] (Get-Prop $c 'Subtype')
            creationTime      = ConvertTo-Iso (Get-Prop $c 'CreationTime')
        }
        if ($entry.subType -like 'Windows Azure Active Directory*') {
            $entry.passwordResetEnabled = Invoke-Step "Get-ADSyncAADPasswordResetConfiguration $($c.Name)" {
                [bool] (Get-ADSyncAADPasswordResetConfiguration -Connector $c.Name).Enabled
            }
        }
        if ($partitionData.ContainsKey($c.Name)) {
            $entry.preferredDcs = $partitionData[$c.Name].preferredDcs
            $entry.lastDc = $partitionData[$c.Name].lastDc
            $entry.signAndSeal = $partitionData[$c.Name].signAndSeal
            $entry.maPartitionData = $partitionData[$c.Name].maPartitionData
        }
        # Objects joined in the connector space: proof of an import and a synchronisation once
        # the run history no longer shows the full runs (it keeps the last runs only).
        $entry.statistics = Invoke-Step "Get-ADSyncConnectorStatistics $($c.Name)" {
            $stats = Get-ADSyncConnectorStatistics -ConnectorName $c.Name
            [ordered] @{ totalConnectors = Get-Prop $stats 'TotalConnectors' }
        }
        $entry.runs = @(Invoke-Step "Get-ADSyncRunProfileResult $($c.Name)" {
            Get-ADSyncRunProfileResult -ConnectorId $c.Identifier -NumberRequested $RunHistory | ForEach-Object {
                [ordered] @{
                    runProfileName = [string] (Get-Prop $_ 'RunProfileName')
                    result         = [string] (Get-Prop $_ 'Result')
                    startDate      = ConvertTo-Iso (Get-Prop $_ 'StartDate')
                    endDate        = ConvertTo-Iso (Get-Prop $_ 'EndDate')
                }
            }
        })
        [void] $connectors.Add($entry)
    }
    $state.connectors = @($connectors)
}

$state.errors = @($errors)
$json = $state | ConvertTo-Json -Depth 8
if ($Path) {
    [IO.File]::WriteAllText($Path, $json, (New-Object System.Text.UTF8Encoding $false))
} else {
    # UTF-8 whatever the console code page, so that names outside ASCII survive the pipe.
    [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false
    [Console]::Out.Write($json)
}
