//! The federation's SDMX structures, built from the catalogue in force and the member list,
//! and written as an SDMX-ML 2.1 structure message.
//!
//! * one dataflow per indicator, with the indicator code as id;
//! * one data structure definition per indicator (same id): `REF_AREA`, the indicator's
//!   disaggregations in catalogue order, `TIME_PERIOD` (the time dimension); `OBS_VALUE`;
//!   the observation attributes `OBS_STATUS`, `CONF_STATUS`, `UNIT_MEASURE`, `UNIT_MULT`,
//!   `COMMENT_OBS`, `SOURCE_DETAIL` — the same layout the SDMX-CSV and SDMX-JSON writers use;
//! * the catalogue's codelists (the reference-area list with every ISO 3166-1 alpha-3 code);
//! * one concept scheme, [`CONCEPT_SCHEME_ID`], with every concept the structures use;
//! * the data provider scheme `DATA_PROVIDERS` (its id and version are fixed by SDMX 2.1):
//!   every member with the publisher role, that is each regional process.
//!
//! All are maintained by the catalogue's agency and carry its content version (the provider
//! scheme: `1.0`, as SDMX requires).

use crate::layout::{ATTRIBUTES, DEFAULT_VERSION, sdmx_id};
use crate::xml::{self, NS_COMMON, NS_MESSAGE, NS_STRUCTURE, attr};
use rcpfed_core::members::{Federation, Role};
use rcpfed_proto::v1;
use std::collections::BTreeSet;

/// The structure media type: SDMX-ML 2.1 structure.
pub const STRUCTURE_MEDIA_TYPE: &str = "application/vnd.sdmx.structure+xml;version=2.1";
/// Id of the concept scheme holding every concept of the structures.
pub const CONCEPT_SCHEME_ID: &str = "RCPFED_CONCEPTS";
/// Id SDMX 2.1 prescribes for a data provider scheme.
pub const PROVIDER_SCHEME_ID: &str = "DATA_PROVIDERS";
/// Version SDMX 2.1 prescribes for a data provider scheme.
pub const PROVIDER_SCHEME_VERSION: &str = "1.0";

/// Concepts of the structures that the catalogue does not define, with their names
/// (SDMX cross-domain concepts).
const FIXED_CONCEPTS: [(&str, &str); 6] = [
    ("TIME_PERIOD", "Time period"),
    ("OBS_VALUE", "Observation value"),
    ("UNIT_MEASURE", "Unit of measure"),
    ("UNIT_MULT", "Unit multiplier"),
    ("COMMENT_OBS", "Observation comment"),
    ("SOURCE_DETAIL", "Source details"),
];

/// The text format of an observation attribute ([`ATTRIBUTES`]) whose concept has no codelist
/// in the catalogue (OBS_STATUS and CONF_STATUS normally have one): UNIT_MULT is a power of
/// ten, the others are free text.
fn attribute_text_type(id: &str) -> &'static str {
    if id == "UNIT_MULT" {
        "Integer"
    } else {
        "String"
    }
}

/// The structure resources this API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// `dataproviderscheme`
    DataProviderScheme,
    /// `dataflow`
    Dataflow,
    /// `codelist`
    Codelist,
    /// `conceptscheme`
    ConceptScheme,
    /// `datastructure`
    DataStructure,
}

impl Resource {
    /// The resource for a path segment (SDMX REST resource names).
    pub fn from_path(segment: &str) -> Option<Self> {
        Some(match segment {
            "dataflow" => Resource::Dataflow,
            "datastructure" => Resource::DataStructure,
            "codelist" => Resource::Codelist,
            "conceptscheme" => Resource::ConceptScheme,
            "dataproviderscheme" => Resource::DataProviderScheme,
            _ => return None,
        })
    }

    /// Whether the resource is an item scheme (an item id may be queried).
    pub fn has_items(self) -> bool {
        matches!(
            self,
            Resource::Codelist | Resource::ConceptScheme | Resource::DataProviderScheme
        )
    }
}

/// One maintainable artefact. The order is the order of the structure message's sections.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Artefact {
    /// The data provider scheme.
    DataProviderScheme,
    /// The dataflow of an indicator.
    Dataflow(String),
    /// A codelist.
    Codelist(String),
    /// The concept scheme.
    ConceptScheme,
    /// The data structure definition of an indicator.
    DataStructure(String),
}

impl Artefact {
    /// Its resource type.
    pub fn resource(&self) -> Resource {
        match self {
            Artefact::DataProviderScheme => Resource::DataProviderScheme,
            Artefact::Dataflow(_) => Resource::Dataflow,
            Artefact::Codelist(_) => Resource::Codelist,
            Artefact::ConceptScheme => Resource::ConceptScheme,
            Artefact::DataStructure(_) => Resource::DataStructure,
        }
    }
}

/// A data provider: a member with the publisher role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// SDMX id (the member id).
    pub id: String,
    /// The member's name.
    pub name: String,
}

/// The data providers of a federation, sorted by id.
pub fn providers(federation: &Federation) -> Vec<Provider> {
    federation
        .members()
        .filter(|m| m.has_role(Role::Publisher))
        .map(|m| Provider {
            id: m.id.clone(),
            name: if m.name.is_empty() {
                m.id.clone()
            } else {
                m.name.clone()
            },
        })
        .collect()
}

/// The structures of the federation at one moment.
pub struct Structures {
    /// The catalogue in force.
    pub catalogue: v1::CatalogueDocument,
    /// The maintenance agency (SDMX id).
    pub agency: String,
    /// The content version of every artefact but the provider scheme.
    pub version: String,
    /// The data providers.
    pub providers: Vec<Provider>,
}

impl Structures {
    /// The structures from `catalogue`; `fallback_agency` when it names none.
    pub fn new(
        catalogue: v1::CatalogueDocument,
        fallback_agency: &str,
        providers: Vec<Provider>,
    ) -> Self {
        let agency = sdmx_id(if catalogue.agency.is_empty() {
            fallback_agency
        } else {
            &catalogue.agency
        });
        let version = if catalogue.catalogue_version.is_empty() {
            DEFAULT_VERSION.to_string()
        } else {
            catalogue.catalogue_version.clone()
        };
        Structures {
            catalogue,
            agency,
            version,
            providers,
        }
    }

    /// Every artefact of a resource type.
    pub fn all(&self, resource: Resource) -> Vec<Artefact> {
        match resource {
            Resource::DataProviderScheme => vec![Artefact::DataProviderScheme],
            Resource::ConceptScheme => vec![Artefact::ConceptScheme],
            Resource::Dataflow => self
                .catalogue
                .indicators
                .iter()
                .map(|i| Artefact::Dataflow(i.code.clone()))
                .collect(),
            Resource::DataStructure => self
                .catalogue
                .indicators
                .iter()
                .map(|i| Artefact::DataStructure(i.code.clone()))
                .collect(),
            Resource::Codelist => self
                .catalogue
                .codelists
                .iter()
                .map(|c| Artefact::Codelist(c.id.clone()))
                .collect(),
        }
    }

    /// The id of an artefact.
    pub fn id_of<'a>(&self, artefact: &'a Artefact) -> &'a str {
        match artefact {
            Artefact::DataProviderScheme => PROVIDER_SCHEME_ID,
            Artefact::ConceptScheme => CONCEPT_SCHEME_ID,
            Artefact::Dataflow(id) | Artefact::DataStructure(id) | Artefact::Codelist(id) => id,
        }
    }

    /// The version of an artefact.
    pub fn version_of(&self, artefact: &Artefact) -> &str {
        match artefact {
            Artefact::DataProviderScheme => PROVIDER_SCHEME_VERSION,
            _ => &self.version,
        }
    }

    fn indicator(&self, code: &str) -> Option<&v1::IndicatorDefinition> {
        self.catalogue.indicators.iter().find(|i| i.code == code)
    }

    fn concept(&self, id: &str) -> Option<&v1::ConceptDefinition> {
        self.catalogue
            .dimensions
            .iter()
            .chain(self.catalogue.attributes.iter())
            .find(|c| c.id == id)
    }

    /// The codelist a concept takes its values from, when the catalogue has it.
    fn codelist_of(&self, concept: &str) -> Option<&str> {
        let id = self.concept(concept)?.codelist.as_str();
        self.catalogue
            .codelists
            .iter()
            .any(|c| c.id == id)
            .then_some(id)
    }

    /// The key dimensions of an indicator's structure, in key order (TIME_PERIOD not
    /// included): REF_AREA, then the disaggregations in catalogue order.
    pub fn key_dimensions(&self, code: &str) -> Vec<String> {
        let mut dims = vec!["REF_AREA".to_string()];
        if let Some(indicator) = self.indicator(code) {
            for d in &indicator.dimensions {
                if d.id != "REF_AREA" && d.id != "TIME_PERIOD" && !dims.contains(&d.id) {
                    dims.push(d.id.clone());
                }
            }
        }
        dims
    }

    /// The artefacts an artefact refers to directly.
    pub fn children(&self, artefact: &Artefact) -> Vec<Artefact> {
        match artefact {
            Artefact::Dataflow(code) => vec![Artefact::DataStructure(code.clone())],
            Artefact::DataStructure(code) => {
                let mut out = vec![Artefact::ConceptScheme];
                let concepts = self
                    .key_dimensions(code)
                    .into_iter()
                    .chain(ATTRIBUTES.iter().map(|(id, _)| id.to_string()));
                for concept in concepts {
                    if let Some(list) = self.codelist_of(&concept) {
                        let list = Artefact::Codelist(list.to_string());
                        if !out.contains(&list) {
                            out.push(list);
                        }
                    }
                }
                out
            }
            _ => Vec::new(),
        }
    }

    /// The artefacts that refer to an artefact directly.
    pub fn parents(&self, artefact: &Artefact) -> Vec<Artefact> {
        match artefact {
            Artefact::DataStructure(code) => vec![Artefact::Dataflow(code.clone())],
            Artefact::Codelist(_) | Artefact::ConceptScheme => self
                .all(Resource::DataStructure)
                .into_iter()
                .filter(|dsd| self.children(dsd).contains(artefact))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// `artefacts` with what `references` (the SDMX REST parameter) adds to them.
    pub fn with_references(
        &self,
        artefacts: &BTreeSet<Artefact>,
        references: References,
    ) -> BTreeSet<Artefact> {
        let mut out = artefacts.clone();
        let descendants = |out: &mut BTreeSet<Artefact>, from: &BTreeSet<Artefact>| {
            let mut todo: Vec<Artefact> = from.iter().cloned().collect();
            while let Some(a) = todo.pop() {
                for child in self.children(&a) {
                    if out.insert(child.clone()) {
                        todo.push(child);
                    }
                }
            }
        };
        let parents: BTreeSet<Artefact> = artefacts.iter().flat_map(|a| self.parents(a)).collect();
        match references {
            References::None => {}
            References::Children => out.extend(artefacts.iter().flat_map(|a| self.children(a))),
            References::Descendants => descendants(&mut out, artefacts),
            References::Parents => out.extend(parents),
            References::ParentsAndSiblings => {
                out.extend(parents.iter().flat_map(|p| self.children(p)));
                out.extend(parents);
            }
            References::All => {
                descendants(&mut out, artefacts);
                out.extend(parents.iter().flat_map(|p| self.children(p)));
                out.extend(parents);
            }
            References::Only(resource) => {
                let mut related = BTreeSet::new();
                descendants(&mut related, artefacts);
                related.extend(parents);
                out.extend(related.into_iter().filter(|a| a.resource() == resource));
            }
        }
        out
    }

    /// The items of an item scheme: (id, name).
    fn items(&self, artefact: &Artefact) -> Vec<(String, String)> {
        let named = |id: &str, name: &str| {
            (
                id.to_string(),
                if name.is_empty() { id } else { name }.to_string(),
            )
        };
        match artefact {
            Artefact::DataProviderScheme => self
                .providers
                .iter()
                .map(|p| (sdmx_id(&p.id), p.name.clone()))
                .collect(),
            Artefact::ConceptScheme => {
                let mut items: Vec<(String, String)> = self
                    .catalogue
                    .dimensions
                    .iter()
                    .chain(self.catalogue.attributes.iter())
                    .map(|c| named(&c.id, &c.name))
                    .collect();
                for (id, name) in FIXED_CONCEPTS {
                    if !items.iter().any(|(i, _)| i == id) {
                        items.push(named(id, name));
                    }
                }
                items
            }
            Artefact::Codelist(id) => {
                let Some(list) = self.catalogue.codelists.iter().find(|c| &c.id == id) else {
                    return Vec::new();
                };
                let mut codes: Vec<(String, String)> =
                    list.codes.iter().map(|c| named(&c.id, &c.name)).collect();
                if list.iso3166_alpha3 {
                    for code in rcpfed_core::iso3166::all_alpha3() {
                        if !codes.iter().any(|(c, _)| c == code) {
                            codes.push(named(code, ""));
                        }
                    }
                }
                codes.sort();
                codes
            }
            _ => Vec::new(),
        }
    }

    /// Whether an item scheme holds at least one item `keep` accepts.
    pub fn has_item(&self, artefact: &Artefact, keep: &dyn Fn(&str) -> bool) -> bool {
        self.items(artefact).iter().any(|(id, _)| keep(id))
    }

    /// Writes a structure message with `artefacts`; in the item schemes among `filtered`,
    /// only the items `keep` accepts.
    pub fn write_message(
        &self,
        artefacts: &BTreeSet<Artefact>,
        filtered: &BTreeSet<Artefact>,
        keep: &dyn Fn(&str) -> bool,
        message_id: &str,
        prepared_ms: i64,
        out: &mut String,
    ) {
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<message:Structure");
        attr("xmlns:message", NS_MESSAGE, out);
        attr("xmlns:structure", NS_STRUCTURE, out);
        attr("xmlns:common", NS_COMMON, out);
        out.push('>');
        xml::header_start(message_id, prepared_ms, &self.agency, out);
        out.push_str("</message:Header><message:Structures>");
        let sections: [(Resource, &str); 5] = [
            (Resource::DataProviderScheme, "OrganisationSchemes"),
            (Resource::Dataflow, "Dataflows"),
            (Resource::Codelist, "Codelists"),
            (Resource::ConceptScheme, "Concepts"),
            (Resource::DataStructure, "DataStructures"),
        ];
        for (resource, section) in sections {
            let members: Vec<&Artefact> = artefacts
                .iter()
                .filter(|a| a.resource() == resource)
                .collect();
            if members.is_empty() {
                continue;
            }
            out.push_str(&format!("<structure:{section}>"));
            for a in members {
                let all = |_: &str| true;
                let keep: &dyn Fn(&str) -> bool = if filtered.contains(a) { keep } else { &all };
                self.write_artefact(a, keep, out);
            }
            out.push_str(&format!("</structure:{section}>"));
        }
        out.push_str("</message:Structures></message:Structure>\n");
    }

    fn open_maintainable(&self, element: &str, artefact: &Artefact, out: &mut String) {
        out.push_str("<structure:");
        out.push_str(element);
        attr("id", self.id_of(artefact), out);
        attr("agencyID", &self.agency, out);
        attr("version", self.version_of(artefact), out);
        attr("isFinal", "false", out);
        out.push('>');
    }

    fn write_artefact(&self, artefact: &Artefact, keep: &dyn Fn(&str) -> bool, out: &mut String) {
        let (element, item_element, name) = match artefact {
            Artefact::DataProviderScheme => (
                "DataProviderScheme",
                "DataProvider",
                "Data providers: the regional processes of the federation".to_string(),
            ),
            Artefact::ConceptScheme => (
                "ConceptScheme",
                "Concept",
                format!("Concepts of {}", self.catalogue.name),
            ),
            Artefact::Codelist(id) => (
                "Codelist",
                "Code",
                self.catalogue
                    .codelists
                    .iter()
                    .find(|c| &c.id == id)
                    .map(|c| c.name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| id.clone()),
            ),
            Artefact::Dataflow(code) => {
                self.open_maintainable("Dataflow", artefact, out);
                xml::name(&self.indicator_name(code), out);
                out.push_str("<structure:Structure>");
                self.reference(code, "datastructure", "DataStructure", out);
                out.push_str("</structure:Structure></structure:Dataflow>");
                return;
            }
            Artefact::DataStructure(code) => {
                self.write_data_structure(artefact, code, out);
                return;
            }
        };
        self.open_maintainable(element, artefact, out);
        xml::name(&name, out);
        for (id, item_name) in self.items(artefact) {
            if !keep(&id) {
                continue;
            }
            out.push_str("<structure:");
            out.push_str(item_element);
            attr("id", &id, out);
            out.push('>');
            xml::name(&item_name, out);
            out.push_str("</structure:");
            out.push_str(item_element);
            out.push('>');
        }
        out.push_str("</structure:");
        out.push_str(element);
        out.push('>');
    }

    fn indicator_name(&self, code: &str) -> String {
        self.indicator(code)
            .map(|i| i.name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| code.to_string())
    }

    /// `<Ref …/>` to a maintainable of this agency and version.
    fn reference(&self, id: &str, package: &str, class: &str, out: &mut String) {
        out.push_str("<Ref");
        attr("id", id, out);
        attr("version", &self.version, out);
        attr("agencyID", &self.agency, out);
        attr("package", package, out);
        attr("class", class, out);
        out.push_str("/>");
    }

    fn concept_identity(&self, concept: &str, out: &mut String) {
        out.push_str("<structure:ConceptIdentity><Ref");
        attr("id", concept, out);
        attr("maintainableParentID", CONCEPT_SCHEME_ID, out);
        attr("maintainableParentVersion", &self.version, out);
        attr("agencyID", &self.agency, out);
        attr("package", "conceptscheme", out);
        attr("class", "Concept", out);
        out.push_str("/></structure:ConceptIdentity>");
    }

    /// The local representation of a concept: its codelist, else `text_type`.
    fn representation(&self, concept: &str, text_type: &str, out: &mut String) {
        out.push_str("<structure:LocalRepresentation>");
        match self.codelist_of(concept) {
            Some(list) => {
                out.push_str("<structure:Enumeration>");
                self.reference(list, "codelist", "Codelist", out);
                out.push_str("</structure:Enumeration>");
            }
            None => {
                out.push_str("<structure:TextFormat");
                attr("textType", text_type, out);
                out.push_str("/>");
            }
        }
        out.push_str("</structure:LocalRepresentation>");
    }

    fn write_data_structure(&self, artefact: &Artefact, code: &str, out: &mut String) {
        self.open_maintainable("DataStructure", artefact, out);
        xml::name(&self.indicator_name(code), out);
        out.push_str(
            "<structure:DataStructureComponents><structure:DimensionList id=\"DimensionDescriptor\">",
        );
        let dims = self.key_dimensions(code);
        for (i, dim) in dims.iter().enumerate() {
            out.push_str("<structure:Dimension");
            attr("id", dim, out);
            attr("position", &(i + 1).to_string(), out);
            out.push('>');
            self.concept_identity(dim, out);
            self.representation(dim, "String", out);
            out.push_str("</structure:Dimension>");
        }
        out.push_str("<structure:TimeDimension id=\"TIME_PERIOD\"");
        attr("position", &(dims.len() + 1).to_string(), out);
        out.push('>');
        self.concept_identity("TIME_PERIOD", out);
        out.push_str("<structure:LocalRepresentation><structure:TextFormat textType=\"ObservationalTimePeriod\"/></structure:LocalRepresentation></structure:TimeDimension></structure:DimensionList>");
        out.push_str("<structure:AttributeList id=\"AttributeDescriptor\">");
        for (id, _) in ATTRIBUTES {
            out.push_str("<structure:Attribute");
            attr("id", id, out);
            attr("assignmentStatus", "Conditional", out);
            out.push('>');
            self.concept_identity(id, out);
            self.representation(id, attribute_text_type(id), out);
            out.push_str("<structure:AttributeRelationship><structure:PrimaryMeasure><Ref id=\"OBS_VALUE\"/></structure:PrimaryMeasure></structure:AttributeRelationship></structure:Attribute>");
        }
        out.push_str("</structure:AttributeList><structure:MeasureList id=\"MeasureDescriptor\"><structure:PrimaryMeasure id=\"OBS_VALUE\">");
        self.concept_identity("OBS_VALUE", out);
        out.push_str("<structure:LocalRepresentation><structure:TextFormat textType=\"Double\"/></structure:LocalRepresentation></structure:PrimaryMeasure></structure:MeasureList></structure:DataStructureComponents></structure:DataStructure>");
    }
}

/// The SDMX REST `references` parameter of structure queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum References {
    /// `none` (the default)
    None,
    /// `parents`
    Parents,
    /// `parentsandsiblings`
    ParentsAndSiblings,
    /// `children`
    Children,
    /// `descendants`
    Descendants,
    /// `all`
    All,
    /// A resource type: the related artefacts of that type.
    Only(Resource),
}

impl References {
    /// The parameter's value, or None when it is not one of the values SDMX REST defines
    /// for structures this API serves.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "none" => References::None,
            "parents" => References::Parents,
            "parentsandsiblings" => References::ParentsAndSiblings,
            "children" => References::Children,
            "descendants" => References::Descendants,
            "all" => References::All,
            other => References::Only(Resource::from_path(other)?),
        })
    }
}
