"""The Darwin Core terms an archive's files may use, as the standards list them: the
oracle of the Darwin Core tests, independent of the code under test.

``OCCURRENCE_CORE``: TDWG's occurrence core (dist/dwc-a/dwc_occurrence_core), the
record-level terms of Dublin Core first. ``EVENT_CORE``: GBIF's Event core definition
(rs.gbif.org/core/dwc_event_2022-02-02.xml): its record-level, Event and Location
groups' properties.
"""

from __future__ import annotations

DWC, DC = "http://rs.tdwg.org/dwc/terms/", "http://purl.org/dc/terms/"

_DC_TERMS = "type modified language license rightsHolder accessRights bibliographicCitation "
_DC_TERMS += "references"
_OCCURRENCE_TERMS = """
institutionID collectionID datasetID institutionCode collectionCode datasetName
ownerInstitutionCode basisOfRecord informationWithheld dataGeneralizations dynamicProperties
occurrenceID catalogNumber recordNumber recordedBy recordedByID individualCount
organismQuantity organismQuantityType sex lifeStage reproductiveCondition behavior
establishmentMeans degreeOfEstablishment pathway occurrenceStatus preparations disposition
associatedMedia associatedOccurrences associatedReferences associatedSequences associatedTaxa
otherCatalogNumbers occurrenceRemarks organismID organismName organismScope
associatedOrganisms previousIdentifications organismRemarks materialSampleID eventID
parentEventID fieldNumber eventDate eventTime startDayOfYear endDayOfYear year month day
verbatimEventDate habitat samplingProtocol sampleSizeValue sampleSizeUnit samplingEffort
fieldNotes eventRemarks locationID higherGeographyID higherGeography continent waterBody
islandGroup island country countryCode stateProvince county municipality locality
verbatimLocality minimumElevationInMeters maximumElevationInMeters verbatimElevation
minimumDepthInMeters maximumDepthInMeters verbatimDepth locationAccordingTo locationRemarks
decimalLatitude decimalLongitude geodeticDatum coordinateUncertaintyInMeters
coordinatePrecision pointRadiusSpatialFit verbatimCoordinates verbatimLatitude
verbatimLongitude verbatimCoordinateSystem verbatimSRS footprintWKT footprintSRS
footprintSpatialFit georeferencedBy georeferencedDate georeferenceProtocol
georeferenceSources georeferenceRemarks identificationID verbatimIdentification
identificationQualifier typeStatus identifiedBy identifiedByID dateIdentified
identificationReferences identificationVerificationStatus identificationRemarks taxonID
scientificNameID acceptedNameUsageID parentNameUsageID originalNameUsageID nameAccordingToID
namePublishedInID taxonConceptID scientificName acceptedNameUsage parentNameUsage
originalNameUsage nameAccordingTo namePublishedIn namePublishedInYear higherClassification
kingdom phylum class order family subfamily genus genericName subgenus infragenericEpithet
specificEpithet infraspecificEpithet taxonRank verbatimTaxonRank scientificNameAuthorship
vernacularName nomenclaturalCode taxonomicStatus nomenclaturalStatus taxonRemarks
"""
OCCURRENCE_CORE = {DC + t for t in _DC_TERMS.split()} | {DWC + t for t in _OCCURRENCE_TERMS.split()}

_EVENT_DC_TERMS = "modified license rightsHolder accessRights bibliographicCitation references"
_EVENT_TERMS = """
institutionID datasetID institutionCode datasetName ownerInstitutionCode informationWithheld
dataGeneralizations dynamicProperties
eventID parentEventID samplingProtocol sampleSizeValue sampleSizeUnit samplingEffort
eventDate eventTime startDayOfYear endDayOfYear year month day verbatimEventDate habitat
fieldNumber fieldNotes eventRemarks
locationID higherGeographyID higherGeography continent waterBody islandGroup island country
countryCode stateProvince county municipality locality verbatimLocality
minimumElevationInMeters maximumElevationInMeters verbatimElevation verticalDatum
minimumDepthInMeters maximumDepthInMeters verbatimDepth
minimumDistanceAboveSurfaceInMeters maximumDistanceAboveSurfaceInMeters
locationAccordingTo locationRemarks decimalLatitude decimalLongitude geodeticDatum
coordinateUncertaintyInMeters coordinatePrecision pointRadiusSpatialFit verbatimCoordinates
verbatimLatitude verbatimLongitude verbatimCoordinateSystem verbatimSRS footprintWKT
footprintSRS footprintSpatialFit georeferencedBy georeferencedDate georeferenceProtocol
georeferenceSources georeferenceRemarks
"""
EVENT_CORE = {DC + t for t in _EVENT_DC_TERMS.split()} | {DWC + t for t in _EVENT_TERMS.split()}
